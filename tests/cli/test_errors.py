"""Errors through the CLI: one handler, one exit code per error, JSON with ``--json``."""

from __future__ import annotations

import json
import uuid

import pytest

from cli.output import ExitCode
from sync.crypto import new_secret_key
from tests.cli.conftest import Run, as_json


def test_a_domain_error_is_a_message_and_its_exit_code(run: Run, org: str) -> None:
    missing = str(uuid.uuid4())
    result = run("customers", "show", missing, "--org", org, code=ExitCode.NOT_FOUND)
    assert result.stderr.startswith("Error: no customer") and missing in result.stderr
    assert result.stdout == ""
    # not a UUID: the same answer, not a store error
    run("customers", "show", "nope", "--org", org, code=ExitCode.NOT_FOUND)


def test_with_json_an_error_is_a_json_line_on_stderr(run: Run, org: str) -> None:
    missing = str(uuid.uuid4())
    result = run("customers", "show", missing, "--org", org, "--json", code=ExitCode.NOT_FOUND)
    assert json.loads(result.stderr) == {
        "error": "customer_not_found",
        "message": f"no customer {missing!r} in this organisation",
        "exit_code": 3,
    }
    assert result.stdout == ""
    # an error the command itself reports (no such conflict) comes out as JSON too
    result = run("conflicts", "show", "nope", "--org", org, "--json", code=ExitCode.NOT_FOUND)
    assert json.loads(result.stderr)["error"] == "not_found"
    # and the next command without --json prints as usual
    assert run("runs", "show", "nope", "--org", org, code=ExitCode.NOT_FOUND).stderr.startswith(
        "Error: no run"
    )


def test_an_operator_error_raised_deep_in_the_domain_gets_its_code(run: Run, org: str) -> None:
    bad = run(
        "operators", "add", "not-an-address", "--org", org, "--role", "viewer", "--json",
        code=ExitCode.INVALID,
    )  # fmt: skip
    error = json.loads(bad.stderr)
    assert error["error"] == "operator_error" and error["exit_code"] == 4
    assert "not-an-address" in error["message"]
    gone = run("operators", "link", "nobody@example.com", "--org", org, code=ExitCode.NOT_FOUND)
    assert "no operator" in gone.stderr


def test_a_bad_setting_is_named_with_where_to_fix_it(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_LOG_LEVEL", "verbose")
    result = run("orgs", "list", code=ExitCode.ERROR)
    assert result.stderr.startswith("Error: bad setting: CRMSYNC_LOG_LEVEL: Input should be")
    assert "Traceback" not in result.stderr
    assert ".env" in result.stderr
    monkeypatch.delenv("CRMSYNC_LOG_LEVEL")
    # a store crmsync has no back-end for: said at once (it was a driver's ImportError), and
    # the URL's password is not repeated
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", "mysql://billing:hunter2@db/crm")
    result = run("orgs", "list", "--json", code=ExitCode.ERROR)
    error = json.loads(result.stderr)
    assert (error["error"], error["exit_code"]) == ("bad_setting", 1)
    assert (
        "CRMSYNC_DATABASE_URL" in error["message"] and "postgresql+psycopg://" in error["message"]
    )
    assert "hunter2" not in result.stderr


def test_a_secret_with_nothing_to_read_says_how_to_give_it(
    run: Run, org: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a script's stdin at its end: no terminal to prompt on (it was click's bare "Aborted!")
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("ALERT_WEBHOOK_SECRET", raising=False)
    add = ("connections", "add", "hubspot", "hs", "--org", org, "--host", "http://127.0.0.1:9")
    token = run(*add, "--no-check", "--client-secret", "s", code=ExitCode.USAGE)
    assert "no hubspot access token given: give --access-token, set HUBSPOT_ACCESS_TOKEN" in (
        token.stderr
    )
    alerts = run(
        *add, "--no-check", "--access-token", "t", "--client-secret", "s",
        "--alert-webhook", "http://127.0.0.1:9/alerts", code=ExitCode.USAGE,
    )  # fmt: skip
    assert "no alert signing secret given: give --alert-secret" in alerts.stderr
    assert "Aborted" not in token.stderr + alerts.stderr
    assert as_json(run("connections", "list", "--org", org, "--json")) == []


def test_health_ready_says_why_the_broker_is_unreachable(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_BROKER_URL", "redis://127.0.0.1:1/0")
    result = run("health", "ready", code=ExitCode.ERROR)
    # in the operator's terminal, the error's own words (it was its class name alone)
    assert "broker: unreachable: " in result.stdout and "127.0.0.1:1" in result.stdout
    assert "database: ok" in result.stdout
