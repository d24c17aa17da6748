"""``crmsync up`` on the embedded default: SQLite, a file queue, file locks, no Redis — the
web API, beat (with its heartbeat) and a worker in one process, syncing on schedule and from
a webhook."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import httpx
from sqlalchemy import select

from sandbox.server import Sandbox
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import make_engine, transaction, upgrade
from sync.store.models import CustomerRow, SyncRun
from tests.tasks.conftest import CRMSYNC, HUBSPOT_SECRET, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_runs_everything_on_one_machine_without_redis(crm: Sandbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crmsync.db'}"
    upgrade(url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(
        CRMSYNC_DATABASE_URL=url,
        CRMSYNC_SECRET_KEY=new_secret_key(),
        CRMSYNC_DISPATCH_INTERVAL_SECONDS="1",
        CRMSYNC_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    settings = Settings(database_url=url, secret_key=env["CRMSYNC_SECRET_KEY"])
    engine = make_engine(url)
    ids = crm.hubspot.seed_companies(4)
    with transaction(engine) as session:
        org = organisations.create_organisation(session, "Solo").id
        spec = ConnectionSpec(
            name="hs",
            kind="hubspot",
            credentials={"access_token": "t", "client_secret": HUBSPOT_SECRET},
            settings={"host": crm.hubspot_url, "backoff_base_seconds": 0.01},
            schedule_seconds=3600,
        )
        connection = add_connection(session, settings, org, spec).id
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [CRMSYNC, "up", "--port", str(port), "--concurrency", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def synced(trigger: str) -> bool:
            with transaction(engine) as session:
                found = session.scalars(
                    select(SyncRun).where(SyncRun.trigger == trigger, SyncRun.status == "succeeded")
                ).all()
                return bool(found)

        wait_for(lambda: synced("schedule"), 60, f"the scheduled sync:\n{log.read_text()}")
        # its beat renews the heartbeat that beat's healthcheck reads, as `crmsync beat` does
        beat = subprocess.run(
            [CRMSYNC, "health", "beat", "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert beat.returncode == 0, beat.stdout + beat.stderr
        assert json.loads(beat.stdout)["healthy"] is True
        crm.hubspot.configure_webhooks(
            url=f"http://127.0.0.1:{port}/webhooks/hubspot/{connection}",
            client_secret=HUBSPOT_SECRET,
            enabled=True,
        )
        crm.hubspot.edit(ids[0], {"name": "Embedded Webhook Co"})
        assert crm.hubspot.flush_webhooks(15)
        assert crm.hubspot.webhooks.deliveries[-1].status == 200

        def renamed() -> bool:
            with transaction(engine) as session:
                names = set(session.scalars(select(CustomerRow.customer_name)))
            return "Embedded Webhook Co" in names

        wait_for(renamed, 60, f"the webhook sync:\n{log.read_text()}")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        assert (tmp_path / ".crmsync" / "queue" / "messages").is_dir()
    finally:
        up.terminate()
        try:
            up.wait(timeout=20)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(timeout=5)
        engine.dispose()


def test_up_on_a_port_in_use_stops_instead_of_running_without_the_api(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(
        CRMSYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'crmsync.db'}",
        CRMSYNC_SECRET_KEY=new_secret_key(),
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CRMSYNC, "up", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the web API could not listen on 127.0.0.1:{port}" in done.stderr
    assert "crmsync is up" not in done.stdout
