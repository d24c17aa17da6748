"""Shared fixtures: the store on SQLite and PostgreSQL, Redis, and the CRM sandbox.

PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) are used where
reachable; under ``CI=true`` a missing service fails the run instead of skipping it. Each
pytest process works in its own PostgreSQL schema, so concurrent runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, text

from sync.store.db import make_engine, upgrade
from sync.store.models import Base

POSTGRES_URL = os.environ.get(
    "CRMSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CRMSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("CRMSYNC_HYPOTHESIS_PROFILE", "default"))


def service_missing(what: str, error: Exception) -> None:
    """Fail under CI (the suite must run there), skip elsewhere."""
    message = f"{what} is not reachable: {error}"
    if IN_CI:
        pytest.fail(f"{message} (required under CI=true)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema, migrated to head."""
    schema = f"crmsync_test_{uuid.uuid4().hex[:10]}"
    admin: Engine = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite and PostgreSQL: an empty, migrated store."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crmsync.db'}"
        upgrade(url)
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    _truncate_all(engine)
    engine.dispose()
    yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> str:
    """Point crmsync's settings (as the CLI and the API read them) at the test store."""
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", database_url)
    monkeypatch.delenv("CRMSYNC_BROKER_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return database_url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as error:
        service_missing("Redis", error)
    finally:
        client.close()
    return REDIS_URL


# --- figures ---------------------------------------------------------------------------------
# Tests of the real system (tests/reliability, tests/security) report what they measured:
# kills survived, records lost, calls against their bound, answer times. Each figure is
# written to build/test-figures/ and printed in pytest's closing summary, with or without -s.

FIGURES_DIR = Path(__file__).resolve().parent.parent / "build" / "test-figures"
_FIGURES: list[tuple[str, dict[str, object]]] = []


class Figures:
    """``figures.report(**values)``: record what a test measured under the test's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def report(self, **values: object) -> None:
        import json

        _FIGURES.append((self.name, values))
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        with open(FIGURES_DIR / f"{safe}.jsonl", "a") as out:
            out.write(json.dumps(values, default=str) + "\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.write_sep("-", "figures (also in build/test-figures/)")
    for name, values in _FIGURES:
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{name}: {shown}")


#: the longest engine suites: in ``make test`` they run on PostgreSQL (the production store);
#: their embedded-store (SQLite) variants run in ``make test-slow``, with the long profiles
SQLITE_IN_SLOW_ONLY = ("test_merges.py", "test_contacts_both_ways.py", "test_resume.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SQLITE_IN_SLOW_ONLY and "sqlite" in item.name:
            item.add_marker(pytest.mark.slow)
