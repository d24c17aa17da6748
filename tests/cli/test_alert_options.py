"""``connections add|set --alert-webhook``: the URL and its signing secret are entered once,
stored encrypted, shown only as scheme and host, and never printed."""

from __future__ import annotations

import pytest

from cli.output import ExitCode
from sync.crypto import new_secret_key
from tests.cli.conftest import Run, as_json

HOOK = "https://hooks.slack.example/services/T01/B02/do-not-print-this-part"
SECRET = "alert-signing-secret-for-the-cli-test"


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())


def test_alert_webhook_is_set_shown_by_host_and_turned_off(run: Run, org: str) -> None:
    added = run(
        "connections", "add", "hubspot", "hs", "--org", org, "--no-check",
        "--access-token", "pat-test-token-0000", "--alert-webhook", HOOK, "--json",
        input=f"{SECRET}\n",
    )  # fmt: skip
    shown = as_json(added)
    assert shown["alert_webhook"] == "https://hooks.slack.example/… (signed)"
    assert "do-not-print" not in added.stdout + added.stderr
    assert SECRET not in added.stdout + added.stderr
    off = as_json(run("connections", "set", "hs", "--org", org, "--alert-webhook", "", "--json"))
    assert off["alert_webhook"] is None
    again = run(
        "connections", "set", "hs", "--org", org, "--alert-webhook", HOOK,
        "--alert-secret", SECRET, "--json",
    )  # fmt: skip
    assert as_json(again)["alert_webhook"].startswith("https://hooks.slack.example/")


def test_a_bad_alert_webhook_is_refused_and_nothing_is_stored(run: Run, org: str) -> None:
    refused = run(
        "connections", "add", "hubspot", "hs", "--org", org, "--no-check",
        "--access-token", "pat-test-token-0000", "--alert-webhook", "ftp://x",
        "--alert-secret", SECRET, code=ExitCode.INVALID,
    )  # fmt: skip
    assert "http" in refused.stderr
    assert as_json(run("connections", "list", "--org", org, "--json")) == []
    run(
        "connections", "add", "hubspot", "hs", "--org", org, "--no-check",
        "--access-token", "pat-test-token-0000",
    )  # fmt: skip
    short = run(
        "connections", "set", "hs", "--org", org, "--alert-webhook", HOOK,
        "--alert-secret", "short", code=ExitCode.INVALID,
    )  # fmt: skip
    assert "16 characters" in short.stderr
