"""``crmsync --help`` is printed without Typer (:mod:`cli.launch`), exactly as the Typer
app prints it, at any terminal width; every other command line goes to the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli.launch import help_text

PROBE = """
import json, sys
sys.argv = ["crmsync", *json.loads(sys.argv[1])]
from cli.launch import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _run(code: str, *args: str, columns: int = 80) -> str:
    env = {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done.stdout


@pytest.mark.parametrize("columns", [40, 60, 72, 80, 200])
def test_the_help_is_the_typer_apps_at_every_width(columns: int) -> None:
    typer_help = _run(
        "from cli.main import app; app(prog_name='crmsync')", "--help", columns=columns
    )
    assert typer_help.startswith("Usage: crmsync")
    assert help_text(columns) == typer_help


def test_the_help_imports_neither_typer_nor_click() -> None:
    out = _run(PROBE, json.dumps(["--help"]))
    *printed, modules = out.splitlines()
    assert "\n".join(printed) + "\n" == help_text()
    assert not {"typer", "click", "sqlalchemy", "pydantic"} & set(json.loads(modules))


def test_other_command_lines_go_to_the_typer_app() -> None:
    out = _run(PROBE, json.dumps(["db", "--help"]))
    *printed, modules = out.splitlines()
    assert "Usage: crmsync db" in "\n".join(printed)
    assert "typer" in json.loads(modules)
