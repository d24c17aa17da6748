"""The CLI in-process (typer.testing.CliRunner) on the test store, via ``settings_env``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from sync.store.db import engine_for

Run = Callable[..., Result]


@pytest.fixture
def run(settings_env: str) -> Iterator[Run]:
    """``run("orgs", "list", "--json")``: invoke crmsync; ``code=`` asserts the exit code."""
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0, input: str | None = None) -> Result:
        result = runner.invoke(app, list(args), input=input)
        if code is not None:
            assert result.exit_code == code, (
                f"crmsync {' '.join(args)} exited {result.exit_code}, not {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
            )
        return result

    yield invoke
    engine_for(settings_env).dispose()
    engine_for.cache_clear()


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture
def org(run: Run) -> str:
    """A new organisation's id."""
    org_id: str = as_json(run("orgs", "create", "Acme Billing", "--json"))["id"]
    return org_id
