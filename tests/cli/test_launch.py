"""``crmsync --help`` is printed without Typer (:mod:`cli.launch`), exactly as the Typer
app prints it, at any terminal width; every other command line goes to the app, with its
log lines set up first (redacted, warnings only unless ``CRMSYNC_LOG_LEVEL`` is set)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli.launch import configure_logs, help_text
from sync.crypto import new_secret_key

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


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, given back as it was (configure_logs adds crmsync's handler)."""
    root = logging.getLogger()
    level = root.level
    yield root
    for handler in list(root.handlers):
        if handler.get_name() == "crmsync":
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_a_commands_warnings_go_through_the_log_set_up(
    root_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = new_secret_key()
    monkeypatch.delenv("CRMSYNC_LOG_LEVEL", raising=False)
    monkeypatch.setenv("CRMSYNC_LOG_FORMAT", "json")
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", key)
    configure_logs()
    log = logging.getLogger("crmsync.sync")
    log.info("not shown: other commands log warnings only")
    log.warning("record failed", extra={"error_code": "X1", "error_message": f"bad {key}"})
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = [json.loads(text) for text in captured.err.splitlines() if text.strip()]
    assert (line["event"], line["level"], line["error_code"]) == ("record failed", "warning", "X1")
    assert key not in captured.err


def test_crmsync_log_level_applies_to_every_command(
    root_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRMSYNC_LOG_LEVEL", "info")
    monkeypatch.setenv("CRMSYNC_LOG_FORMAT", "console")
    configure_logs()
    logging.getLogger("crmsync.sync").info("run started", extra={"trigger": "operator"})
    err = capsys.readouterr().err
    assert "run started" in err
    assert "trigger=operator" in err


def test_the_executable_sets_up_logs_before_the_command() -> None:
    probe = PROBE.replace(
        "print(json.dumps(sorted(",
        "import logging; print(json.dumps([h.get_name() for h in logging.getLogger().handlers]))"
        "\nprint(json.dumps(sorted(",
    )
    out = _run(probe, json.dumps(["orgs", "--help"]))
    *_, handlers, _modules = out.splitlines()
    assert "crmsync" in json.loads(handlers)
