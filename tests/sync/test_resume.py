"""A run killed mid-way resumes from its last committed page, losing and duplicating nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from sandbox.server import Sandbox
from sync.engine import COMMIT_EVERY
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import CustomerRow, LinkRow, SyncRun
from tests.sync.conftest import CRMS, make_world

ROOT = Path(__file__).resolve().parents[2]
RUNNER = (
    "import sys\n"
    "from sync.engine import sync_connection\n"
    "from sync.settings import Settings\n"
    "from sync.store.db import make_engine\n"
    "s = Settings()\n"
    "sync_connection(make_engine(s.database_url), s, sys.argv[1], trigger='schedule')\n"
)
# per CRM: records to seed (several engine pages of 1,000) and the faults that make the CRM
# stop answering part-way through the pull, for good: the run commits its first engine page
# (or two), then waits on the CRM until it is killed. The kill lands mid-run however slow
# the machine is (a latency fault only made it likely: a loaded machine polled the cursor
# after the last page was in). Answered first: the connector's two describe / properties
# calls, then (Salesforce) four query pages of 500 = two engine pages, (HubSpot) seven
# search pages of 200 = one engine page and part of the next.
SIZE = {"salesforce": 4500, "hubspot": 2500}
STALL = {
    "salesforce": {"query_batch_size": 500, "hang_after": 2 + 4},
    "hubspot": {"hang_after": 2 + 7},
}
#: the stalled requests outlast the test: the worker must still be waiting when killed
HANG_SECONDS = 600
CONNECTOR_SETTINGS = {"request_timeout": float(HANG_SECONDS)}


@pytest.mark.parametrize("crm", CRMS)
def test_killed_run_resumes_from_the_last_committed_page(
    crm: str, engine: Engine, sandbox: Sandbox
) -> None:
    world = make_world(engine, sandbox, crm, connector_settings=CONNECTOR_SETTINGS)
    crm_ids = world.harness.seed(SIZE[crm])
    world.harness.set_faults(**STALL[crm], hang_seconds=HANG_SECONDS)
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "CRMSYNC_SECRET_KEY": world.settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", RUNNER, world.connection_id], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with transaction(engine) as s:
                if repo.get_cursor(s, world.connection_id, "customers") is not None:
                    break
            assert worker.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no page was committed within 60 s")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    with transaction(engine) as s:
        committed = s.scalar(select(func.count()).select_from(CustomerRow)) or 0
    assert 0 < committed < len(crm_ids), "the kill should land mid-run"
    assert committed % COMMIT_EVERY == 0, "a page is committed whole or not at all"

    world.harness.set_faults(hang_after=None)
    result = world.sync()

    assert result.status == "succeeded", result.error
    with transaction(engine) as s:
        external_ids = list(s.scalars(select(CustomerRow.external_id)))
        links = s.scalar(select(func.count()).select_from(LinkRow)) or 0
        statuses = [r.status for r in s.scalars(select(SyncRun).order_by(SyncRun.started_at))]
    assert sorted(external_ids) == sorted(crm_ids)  # everything, exactly once
    assert links == len(crm_ids)
    assert statuses == ["interrupted", "succeeded"]
    # it resumed: the second run did not re-create what the killed one committed
    assert result.counters["created"] == len(crm_ids) - committed
