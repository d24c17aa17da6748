"""A connection whose run failed, as an operator sees and recovers it: ``crmsync failures
list`` / ``show`` name it (with the CRM's words and the run), ``crmsync retry`` syncs the
connection again, and the failure closes once a run succeeds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from tests.cli.conftest import Run, as_json
from tests.cli.test_operator import TOKEN, add_hubspot


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture
def crm(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    sandbox.hubspot.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    return sandbox


def test_a_failed_run_is_listed_and_recovered_by_retry(run: Run, org: str, crm: Sandbox) -> None:
    crm.hubspot.seed_companies(2)
    connection = add_hubspot(run, crm, org)
    crm.hubspot.set_faults(expired_token=True)

    run("sync", "hs", "--org", org, "--wait", code=None)
    run("sync", "hs", "--org", org, "--wait", code=None)

    (failure,) = as_json(run("failures", "list", "--org", org, "--json"))
    assert failure["level"] == "connection" and failure["direction"] == "connection"
    assert failure["connection_id"] == connection and failure["attempts"] == 2
    assert (failure["crm_id"], failure["customer_id"]) == (None, None)
    assert (failure["error_kind"], failure["error_code"]) == ("auth", "401")
    assert "EXPIRED_AUTHENTICATION" in failure["error_message"]
    (last_run, *_) = as_json(run("runs", "list", "--org", org, "--json"))
    assert failure["run_id"] == last_run["id"] and last_run["status"] == "failed"
    table = run("failures", "list", "--org", org).stdout
    assert "connection (run failed)" in table and "auth 401" in table
    assert TOKEN not in table
    shown = as_json(run("failures", "show", failure["id"], "--org", org, "--json"))
    assert shown["payload"] == {"scope": "connection", "trigger": "operator", "full": False}

    # still failing: the retry says so (exit 1), the row counts one attempt more
    still = run("retry", "--all", "--org", org, "--json", code=1)
    assert as_json(still)["still_failing"] == 1
    (again,) = as_json(run("failures", "list", "--org", org, "--json"))
    assert again["id"] == failure["id"] and again["attempts"] == 3
    assert TOKEN not in still.stdout + still.stderr

    crm.hubspot.clear_faults()  # the token works again
    done = run("retry", failure["id"], "--org", org)
    assert "Retried 1: 1 recovered, 0 still failing." in done.stdout
    assert as_json(run("failures", "list", "--org", org, "--json")) == []
    (closed,) = as_json(run("failures", "list", "--org", org, "--all", "--json"))
    assert (closed["id"], closed["status"]) == (failure["id"], "resolved")
    assert len(as_json(run("customers", "list", "--org", org, "--json"))) == 2


def test_retry_by_connection_names_a_sync_that_could_not_run(
    run: Run, org: str, crm: Sandbox
) -> None:
    crm.hubspot.seed_companies(1)
    add_hubspot(run, crm, org)
    crm.hubspot.set_faults(expired_token=True)
    run("sync", "hs", "--org", org, "--wait", code=None)
    crm.hubspot.clear_faults()
    run("connections", "pause", "hs", "--org", org)

    paused = run("retry", "--all", "--connection", "hs", "--org", org, code=1)

    assert "did not run: paused" in paused.stdout
    assert len(as_json(run("failures", "list", "--org", org, "--json"))) == 1
    run("connections", "resume", "hs", "--org", org)
    recovered = as_json(run("retry", "--all", "--connection", "hs", "--org", org, "--json"))
    assert (recovered["recovered"], recovered["still_failing"]) == (1, 0)
