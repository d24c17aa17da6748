"""``crmsync db``: the store's migrations, and the store session every command opens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from cli.output import ExitCode, fail, say
from sync.settings import get_settings
from sync.store.db import engine_for, transaction
from sync.store.db import upgrade as upgrade_store

app = typer.Typer(name="db", help="The store (SQLite or PostgreSQL): migrations.")


def safe_url(url: str) -> str:
    """The database URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


@contextmanager
def session() -> Iterator[Session]:
    """One transaction on the store of ``CRMSYNC_DATABASE_URL``: committed when the command's
    work succeeds, rolled back when it fails. An unreachable or un-migrated store exits 1
    with a message that says what to do."""
    url = get_settings().database_url
    try:
        with transaction(engine_for(url)) as opened:
            yield opened
    except (OperationalError, ProgrammingError) as error:
        text = str(error.orig or error).lower()
        # SQLite's "no such table", PostgreSQL's 'relation "x" does not exist' (not its
        # 'database "x" does not exist': `db upgrade` does not create a database)
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            fail(f"the store at {safe_url(url)} is not set up: run `crmsync db upgrade`")
        fail(f"cannot use the store at {safe_url(url)}: {str(error.orig or error).strip()}")


@app.command()
def upgrade(
    revision: str = typer.Option("head", help="The Alembic revision to migrate to."),
) -> None:
    """Create or migrate the store's tables (CRMSYNC_DATABASE_URL) to the latest revision."""
    url = get_settings().database_url
    try:
        upgrade_store(url, revision)
    except OperationalError as error:
        fail(f"cannot migrate the store at {safe_url(url)}: {str(error.orig or error).strip()}")
    except Exception as error:  # Alembic's own errors (unknown revision, ...)
        fail(f"migration to {revision} failed: {error}", ExitCode.ERROR)
    say(f"The store at {safe_url(url)} is at revision {revision}.")
