"""Two writers at once on the embedded store (one SQLite file): neither run fails with
"database is locked". Two engines (two pools, as two processes would have) run a sync of
the connection and a resync of named customers side by side, through the engine's public
functions, against the HubSpot sandbox.

Before write transactions began with ``BEGIN IMMEDIATE`` a transaction that read and then
wrote after the other engine had committed got SQLITE_BUSY at once (the busy timeout does
not apply to upgrading a stale read snapshot to a write): about one round in four failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from sandbox.server import Sandbox
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.engine import RunResult, sync_connection, sync_records
from sync.store.db import make_engine, transaction, upgrade
from tests.sync.conftest import make_world

ROUNDS = 12


def test_a_sync_and_a_resync_at_once_both_succeed(tmp_path: Path, sandbox: Sandbox) -> None:
    url = f"sqlite:///{tmp_path / 'crmsync.db'}"
    upgrade(url)
    first, second = make_engine(url), make_engine(url)
    try:
        world = make_world(first, sandbox, "hubspot")
        world.harness.seed(6)
        assert world.sync().status == "succeeded"
        ids = [c["id"] for c in world.customers()]
        failed: list[str] = []
        for round_ in range(ROUNDS):
            # both sides have something to write: a CRM edit and billing edits
            with transaction(first) as s:
                for customer_id in ids:
                    update_customer(
                        s,
                        world.organisation_id,
                        customer_id,
                        CustomerPatch.model_validate({"customer_name": f"B{round_} {customer_id}"}),
                    )
            results = _at_once(
                sync=lambda: sync_connection(
                    first, world.settings, world.connection_id, trigger="test"
                ),
                resync=lambda: sync_records(
                    second, world.settings, world.connection_id, customer_ids=ids, trigger="test"
                ),
            )
            failed += [
                f"round {round_} {name}: {r.status} {r.error}"
                for name, r in results.items()
                if r.status != "succeeded"
            ]
        assert not failed, "\n".join(failed)
    finally:
        first.dispose()
        second.dispose()


def _at_once(**runs: Callable[[], RunResult]) -> dict[str, RunResult]:
    """Each run in its own thread, started together; what each returned."""
    results: dict[str, RunResult] = {}
    start = threading.Barrier(len(runs))

    def run(name: str, call: Callable[[], RunResult]) -> None:
        start.wait()
        results[name] = call()

    threads = [threading.Thread(target=run, args=item) for item in runs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_write_transactions_begin_immediate(database_url: str) -> None:
    """A transaction holds SQLite's write lock from its BEGIN: another engine's write
    transaction cannot begin meanwhile (it would wait out its busy timeout)."""
    engine = make_engine(database_url)
    other = make_engine(database_url, busy_timeout=0.0)
    try:
        with (
            engine.connect() as connection,
            connection.begin(),
            pytest.raises(OperationalError, match="database is locked"),
            other.connect() as second,
            second.begin(),
        ):
            pass
    finally:
        engine.dispose()
        other.dispose()
