"""A store behind the code's migrations (crmsync upgraded, ``crmsync db upgrade`` not run)
is refused up front, on SQLite: a sync or resync exits 1 with what to do and records no run
and no failure (a sync failed halfway, "no such table"); the API answers 503 saying the
same; once migrated, all works again (no restart needed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from api.app import create_app
from cli.output import ExitCode
from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import MIGRATIONS, engine_for, transaction
from sync.store.models import RecordFailure, SyncRun
from tests.api.conftest import TestClient
from tests.cli.conftest import Run, as_json

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def _stamp(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.stamp(config, revision, purge=True)


def _count(url: str, model: Any) -> int:
    with transaction(engine_for(url)) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_store_behind_is_refused_before_anything_runs(
    run: Run, org: str, settings_env: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.hubspot.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    run(
        "connections", "add", "hubspot", "hs", "--org", org, "--host", sandbox.hubspot_url,
        "--access-token", "pat-token", "--client-secret", "hs-secret",
    )  # fmt: skip
    sandbox.hubspot.seed_companies(1)
    run("sync", "hs", "--org", org, "--wait")
    [customer] = as_json(run("customers", "list", "--org", org, "--json"))
    runs = _count(settings_env, SyncRun)
    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    older = script.get_revision(head).down_revision
    assert isinstance(older, str)
    _stamp(settings_env, older)
    # as a new process would find it (one found current is not asked again)
    engine_for(settings_env).dispose()
    engine_for.cache_clear()
    said = f"the store is at revision {older}, this crmsync needs {head}: run `crmsync db upgrade`"

    for args in (("sync", "hs", "--org", org, "--wait"), ("resync", customer["id"], "--org", org)):
        result = run(*args, code=ExitCode.ERROR)
        assert said in " ".join(result.stderr.split()), result.stderr
    error = run("sync", "hs", "--org", org, "--wait", "--json", code=ExitCode.ERROR)
    assert as_json_line(error.stderr) == {
        "error": "store_not_current",
        "message": said,
        "exit_code": 1,
    }
    assert _count(settings_env, SyncRun) == runs
    # a worker refuses to start on it (before Celery starts), with the same words
    worker = run("worker", "--pool", "solo", "--metrics-port", "0", code=ExitCode.ERROR)
    assert said in " ".join(worker.stderr.split())
    assert _count(settings_env, RecordFailure) == 0

    headers = {"organisation": str(uuid.uuid4()), "x-api-key": "crm_x"}
    with TestClient(create_app(Settings(database_url=settings_env))) as client:
        response = client.get("/customers", headers=headers)
        assert response.status_code == 503
        assert response.json() == {"detail": said}

        _stamp(settings_env, head)  # `crmsync db upgrade`: no restart needed
        assert client.get("/customers", headers=headers).status_code == 401
    done = as_json(run("sync", "hs", "--org", org, "--wait", "--json"))
    assert done["status"] == "succeeded"


def as_json_line(text: str) -> Any:
    [line] = [line for line in text.splitlines() if line.strip()]
    return json.loads(line)
