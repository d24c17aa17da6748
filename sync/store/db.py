"""Engines, sessions and migrations for the store (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from sync.store.repository import json_text

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


#: seconds a SQLite transaction waits for another's write lock before "database is locked"
SQLITE_BUSY_TIMEOUT = 30.0


def make_engine(
    url: str, *, echo: bool = False, busy_timeout: float = SQLITE_BUSY_TIMEOUT
) -> Engine:
    """An engine for ``url``. SQLite gets WAL, foreign keys, a busy timeout and write
    transactions that take the write lock as they begin, so that the worker, beat and web
    of ``crmsync up`` (and commands run beside them) can share one file."""
    json_options: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": busy_timeout}, **json_options
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # pysqlite begins a transaction only before a write, so a SAVEPOINT (a page
            # write that isolates a refused record) could open, and its RELEASE commit,
            # the outer transaction. SQLAlchemy's recipe: the driver leaves transactions
            # alone and every transaction begins with our own BEGIN.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # IMMEDIATE: the write lock is taken here, waiting up to the busy timeout
            # (pysqlite's ``timeout``) while another connection holds it. A plain
            # (deferred) BEGIN reads first and asks for the lock at its first write; when
            # another connection committed since this one's reads began, SQLite refuses
            # that upgrade at once ("database is locked": the busy timeout does not apply
            # to a stale snapshot), and a run failed whenever two wrote at once.
            # Reads begin IMMEDIATE too: which transaction of a request or a task will
            # write is not known as it begins, and a read-only one waits at most for one
            # writer's transaction (a run commits per page), not a whole run.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # psycopg would prepare a statement after a few runs, and PostgreSQL may then keep a
    # generic plan made while a table was still small (a backfill grows it from empty): a
    # seq scan per lookup over 100k links. Never preparing plans each of our statements
    # for its own values. (Forcing custom plans for the whole session did the same but
    # also re-planned every foreign-key check of every inserted row: 4x their cost.)
    engine = create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={"prepare_threshold": None},
        **json_options,
    )
    event.listen(engine, "connect", _cached_pages_cost)
    return engine


#: what a random page read costs the planner, against 1.0 for a sequential one, when the
#: server keeps PostgreSQL's default (4.0, a spinning disk's): the value PostgreSQL's manual
#: suggests for solid-state storage and for data that fits in memory
RANDOM_PAGE_COST = 1.1


def _cached_pages_cost(dbapi_connection: Any, _record: Any) -> None:
    """Our sessions plan for pages in memory or on SSD unless the server was tuned.

    A page's lookups (``external_id = ANY(:thousand)``, a thousand CRM ids among the
    links) are planned at PostgreSQL's default ``random_page_cost`` of 4 as a sequential
    scan of the whole table up to some 50,000 rows: 11-16 ms a lookup at 30,000 rows in
    a backfill, where the index takes 1.5 ms, and a page makes several. A value the
    operator set (in the server's configuration, for the database or the role) is kept."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SELECT source FROM pg_settings WHERE name = 'random_page_cost'")
        found = cursor.fetchone()
        if found is not None and found[0] == "default":
            cursor.execute(f"SET random_page_cost = {RANDOM_PAGE_COST}")
    dbapi_connection.commit()


@cache
def engine_for(url: str) -> Engine:
    """One shared engine per URL in this process."""
    return make_engine(url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on error: the boundary
    that tasks, requests and commands own (services never commit)."""
    with session_factory(engine)() as session, session.begin():
        yield session


def asynchronous_commit(session: Session) -> None:
    """This transaction's commit returns before PostgreSQL has flushed it to disk
    (``SET LOCAL synchronous_commit = off``): a crash of the server may lose the last
    commits, never corrupt or half-apply one
    (https://www.postgresql.org/docs/15/wal-async-commit.html). SQLite: nothing."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def store_revisions(engine: Engine) -> set[str]:
    """The Alembic revisions the store is at (none when it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def migration_heads(engine: Engine) -> tuple[set[str], set[str]]:
    """The revisions the store is at, and the heads of the migrations this code ships:
    equal when the store is up to date (``crmsync db upgrade``)."""
    from alembic.script import ScriptDirectory

    return store_revisions(engine), set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations to ``url`` (``crmsync db upgrade``)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)
