"""Times read from the store carry their time zone (UTC) on SQLite as on PostgreSQL: the
same JSON shape from the CLI (runs, connections, conflicts, customers) on both stores."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.store.db import engine_for, transaction
from tests.cli.conftest import Run, as_json

UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def _times(value: Any, path: str = "") -> dict[str, str]:
    """Every value under a key ending in ``_at`` (a time), by its path."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_at") and item is not None:
                found[f"{path}.{key}".lstrip(".")] = item
            found.update(_times(item, f"{path}.{key}".lstrip(".")))
    elif isinstance(value, list):
        for item in value:
            found.update(_times(item, f"{path}[]"))
    return found


def test_times_are_utc_with_their_offset_on_both_stores(
    run: Run, org: str, settings_env: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.hubspot.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    run(
        "connections", "add", "hubspot", "hs", "--org", org, "--host", sandbox.hubspot_url,
        "--access-token", "pat-token", "--client-secret", "hs-secret",
    )  # fmt: skip
    [crm_id] = sandbox.hubspot.seed_companies(1)
    run("sync", "hs", "--org", org, "--wait")
    [customer] = as_json(run("customers", "list", "--org", org, "--json"))
    # the name changed differently on both sides: a conflict
    with transaction(engine_for(settings_env)) as session:
        update_customer(session, org, customer["id"], CustomerPatch(customer_name="Billing"))
    sandbox.hubspot.edit(crm_id, {"name": "CRM"})
    run("sync", "hs", "--org", org, "--wait")
    outputs = {
        "runs": as_json(run("runs", "list", "--org", org, "--json")),
        "connection": as_json(run("connections", "show", "hs", "--org", org, "--json")),
        "customer": as_json(run("customers", "show", customer["id"], "--org", org, "--json")),
        "conflicts": as_json(run("conflicts", "list", "--org", org, "--json")),
    }
    times = _times(outputs)
    assert {
        "runs[].started_at",
        "runs[].finished_at",
        "connection.last_sync_at",
        "conflicts[].created_at",
    } <= set(times)
    for path, value in times.items():
        assert UTC_TIME.match(value), f"{path}: {value!r} is not a UTC time with its offset"
        assert datetime.fromisoformat(value).tzinfo == UTC
