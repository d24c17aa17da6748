"""Secrets at rest: CRM credentials and webhook secrets are stored encrypted (a ``pg_dump``
of the store holds none of them in clear text), and ``crmsync secret-key rotate``
re-encrypts every one under a new key while a worker keeps syncing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from urllib.parse import unquote

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cli.main import app as cli_app
from sync.engine import sync_connection
from sync.store.db import transaction
from sync.store.models import ConnectionRow, SyncRun
from tasks.enqueue import enqueue_sync
from tests.conftest import IN_CI, Figures
from tests.security.conftest import World
from tests.tasks.conftest import wait_for


def dump(world: World) -> str:
    """``pg_dump`` of this test's schema, as text."""
    url = make_url(world.stack.settings.database_url)
    options = unquote(str(url.query.get("options", "")))
    schema = re.search(r"search_path=(\S+)", options)
    assert schema is not None, options
    binary = shutil.which("pg_dump")
    if binary is None:
        if IN_CI:
            pytest.fail("pg_dump is required under CI=true")
        pytest.skip("pg_dump is not installed")
    done = subprocess.run(
        [
            binary,
            "--host",
            str(url.host),
            "--port",
            str(url.port or 5432),
            "--username",
            str(url.username),
            "--schema",
            schema.group(1),
            "--data-only",
            str(url.database),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def every_secret(world: World) -> dict[str, str]:
    return {
        f"{name} of {tenant}": value
        for tenant, t in (("A", world.a), ("B", world.b))
        for name, value in t.secrets().items()
    }


def test_credentials_and_webhook_secrets_are_encrypted_at_rest(
    world: World, figures: Figures
) -> None:
    # a sync has run, so the store holds everything a running system holds
    for connection in (world.a.hubspot, world.b.hubspot):
        assert sync_connection(world.stack.engine, world.stack.settings, connection).status == (
            "succeeded"
        )
    text = dump(world)
    assert "COPY" in text and world.a.hubspot in text  # the dump has the connections
    secrets = every_secret(world)
    hits = [name for name, value in secrets.items() if value in text]
    figures.report(dump_bytes=len(text), secrets_checked=len(secrets), secret_hits=len(hits))
    assert hits == []


def test_rotate_reencrypts_every_credential_while_a_worker_syncs(
    world: World, figures: Figures
) -> None:
    stack = world.stack
    old = stack.env["CRMSYNC_SECRET_KEY"]
    new = Fernet.generate_key().decode()
    both = f"{new},{old}"
    world.crm.hubspot.seed_companies(20)
    # step 1 of a rotation: every process gets NEW,OLD (here: the worker, from its start)
    stack.env["CRMSYNC_SECRET_KEY"] = both
    worker = stack.worker()

    # without the old key nothing can be read: the rotation refuses and writes nothing
    runner = CliRunner()
    refused = runner.invoke(cli_app, ["secret-key", "rotate"], env={"CRMSYNC_SECRET_KEY": new})
    assert refused.exit_code == 1, refused.output
    assert "cannot be decrypted" in refused.stderr

    # the worker syncs all four connections again and again while the rotation runs
    connections = [world.a.hubspot, world.b.hubspot]
    stop = threading.Event()

    def keep_syncing() -> None:
        while not stop.is_set():
            if stack.queue_length("operator") < 2:  # a steady trickle, not a backlog
                for connection in connections:
                    enqueue_sync(stack.settings, connection, trigger="operator")
            stop.wait(0.2)

    feeder = threading.Thread(target=keep_syncing, daemon=True)
    feeder.start()
    started = time.monotonic()
    wait_for(lambda: len(succeeded(world)) >= 2, 60, "syncs before the rotation")
    rotated = runner.invoke(
        cli_app, ["secret-key", "rotate", "--json"], env={"CRMSYNC_SECRET_KEY": both}
    )
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout) == {"rotated": 4, "keys": 2}
    after_rotation = len(succeeded(world))
    wait_for(lambda: len(succeeded(world)) >= after_rotation + 2, 90, "syncs after the rotation")
    stop.set()
    feeder.join(timeout=10)
    wait_for(lambda: stack.queue_length("operator") == 0, 60, "the queued syncs")
    wait_for(lambda: all(r.status != "running" for r in all_runs(world)), 60, "runs to end")
    worker.stop()
    runs = all_runs(world)
    failed = [r.error for r in runs if r.status != "succeeded"]

    # everything is under the new key alone now
    with transaction(stack.engine) as session:
        stored = [c.credentials for c in session.scalars(select(ConnectionRow))]
    under_new = sum(1 for token in stored if _opens(new, token))
    under_old = sum(1 for token in stored if _opens(old, token))
    # and a process that has only the new key works
    stack.env["CRMSYNC_SECRET_KEY"] = new
    alone = stack.cli("sync", "hs", "--org", world.a.id, "--wait", "--json")
    hits = [name for name, value in every_secret(world).items() if value in dump(world)]
    figures.report(
        connections=len(stored),
        under_new_key=under_new,
        under_old_key=under_old,
        runs_during_rotation=len(runs),
        runs_failed=len(failed),
        seconds=round(time.monotonic() - started, 1),
        secret_hits=len(hits),
    )
    assert failed == []
    assert under_new == len(stored) == 4 and under_old == 0
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert hits == []


def _opens(key: str, token: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def all_runs(world: World) -> list[SyncRun]:
    with transaction(world.stack.engine) as session:
        return list(session.scalars(select(SyncRun)))


def succeeded(world: World) -> list[SyncRun]:
    return [r for r in all_runs(world) if r.status == "succeeded"]
