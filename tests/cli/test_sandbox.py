"""``crmsync sandbox serve`` as a newcomer meets it: what it prints is enough to connect an
organisation to both emulators (the commands it prints work as printed)."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.sandbox import banner
from sync.crypto import new_secret_key
from tests.cli.conftest import Run, as_json
from tests.tasks.conftest import CRMSYNC


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``crmsync sandbox serve --json`` on free ports: what it printed."""
    workdir: Path = tmp_path_factory.mktemp("sandbox")
    process = subprocess.Popen(
        [
            *(CRMSYNC, "sandbox", "serve", "--json", "--salesforce-port", "0"),
            *("--hubspot-port", "0", "--accounts", "2", "--companies", "2"),
            *("--workdir", str(workdir)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while True:
            line = process.stdout.readline()
            assert line, "the sandbox exited before it was ready"
            lines.append(line)
            try:
                yield json.loads("".join(lines))
                break
            except json.JSONDecodeError:
                continue
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()


def test_the_printed_commands_connect_an_organisation(
    served: dict[str, Any], run: Run, org: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    commands = [
        shlex.split(line.strip())
        for line in banner(served).splitlines()
        if line.strip().startswith("crmsync connections add")
    ]
    assert [words[3] for words in commands] == ["salesforce", "hubspot"]
    said = []
    for words in commands:
        name = f"{words[3]}-sandbox"
        args = [org if w == "ORG" else name if w == "NAME" else w for w in words[1:]]
        said.append(" ".join(run(*args).stdout.split()))
    # no --webhook-secret: how to give the connection one before pointing Salesforce at it
    assert "?secret=WEBHOOK_SECRET" in said[0]
    assert "no webhook secret yet: until `crmsync connections set" in said[0]
    assert "--credential webhook_secret`, every webhook is refused" in said[0]
    listed = as_json(run("connections", "list", "--org", org, "--json"))
    assert {c["name"] for c in listed} == {"salesforce-sandbox", "hubspot-sandbox"}
    for name in ("salesforce-sandbox", "hubspot-sandbox"):
        assert as_json(run("connections", "test", name, "--org", org, "--json"))["ok"] is True


def test_the_banner_says_where_each_emulator_is_and_how_to_sign_in(
    served: dict[str, Any],
) -> None:
    text = banner(served)
    salesforce, hubspot = served["salesforce"], served["hubspot"]
    for value in (
        salesforce["instance_url"],
        salesforce["ca_bundle"],
        salesforce["organization_id"],
        salesforce["client_id"],
        salesforce["client_secret"],
        hubspot["host"],
        hubspot["client_secret"],
    ):
        assert value in text
