"""``crmsync audit list``: the organisation's audit trail on the command line, on SQLite and
PostgreSQL, with the same read (and so the same words) as the console and the API."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime, timedelta

from cli.output import ExitCode
from tests.cli.conftest import Run, as_json


def add_and_remove(run: Run, org: str) -> None:
    for who, role in (("ada", "admin"), ("vera", "viewer")):
        run("operators", "add", f"{who}@acme.example", "--org", org, "--role", role)
    run("operators", "remove", "vera@acme.example", "--org", org)


def test_lists_what_was_done_newest_first_with_who_did_it(run: Run, org: str) -> None:
    add_and_remove(run, org)
    events = as_json(run("audit", "list", "--org", org, "--json"))
    assert [e["action"] for e in events] == ["operator_removed", "operator_added", "operator_added"]
    user = getpass.getuser()
    assert {e["actor"] for e in events} == {f"cli:{user}"}
    assert {e["who"] for e in events} == {f"CLI ({user})"}
    removed = events[0]
    assert removed["what"] == "removed an operator"
    assert [(t["kind"], t["label"]) for t in removed["targets"]] == [
        ("operator", "vera@acme.example")
    ]
    table = run("audit", "list", "--org", org).stdout
    assert "removed an operator" in table and "operator vera@acme.example" in table
    assert "role=viewer" in table


def test_filters_and_pages(run: Run, org: str) -> None:
    add_and_remove(run, org)
    everything = as_json(run("audit", "list", "--org", org, "--json"))
    added = as_json(run("audit", "list", "--org", org, "--action", "operator_added", "--json"))
    assert added == everything[1:]
    mine = run("audit", "list", "--org", org, "--actor", everything[0]["actor"], "--json")
    assert as_json(mine) == everything
    assert as_json(run("audit", "list", "--org", org, "--actor", "cli:nobody", "--json")) == []
    assert as_json(run("audit", "list", "--org", org, "--limit", "1", "--json")) == everything[:1]
    page = run("audit", "list", "--org", org, "--limit", "2", "--offset", "1", "--json")
    assert as_json(page) == everything[1:]
    today = datetime.now(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    during = run(
        "audit", "list", "--org", org, "--since", today.isoformat(), "--until", tomorrow, "--json"
    )
    assert as_json(during) == everything
    assert as_json(run("audit", "list", "--org", org, "--since", tomorrow, "--json")) == []
    assert "more: --offset" in run("audit", "list", "--org", org, "--limit", "2").stdout
    run("audit", "list", "--org", org, "--limit", "201", code=ExitCode.USAGE)


def test_another_organisation_and_unknown_filters(run: Run, org: str) -> None:
    add_and_remove(run, org)
    other = as_json(run("orgs", "create", "Globex Billing", "--json"))["id"]
    assert as_json(run("audit", "list", "--org", other, "--json")) == []
    missing = str(uuid.uuid4())
    for option in ("--connection", "--customer"):
        run("audit", "list", "--org", org, option, missing, code=ExitCode.NOT_FOUND)
    run("audit", "list", "--org", missing, code=ExitCode.NOT_FOUND)
