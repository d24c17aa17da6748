"""``crmsync --help`` imports none of the commands' modules, and each command imports
only what it uses (the imported modules are checked, not timed: ``make bench`` prints
the time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli.main import COMMANDS, load

#: the command whose help shows each package's modules; none other may import it
ONLY_FOR = {
    "sandbox": {"sandbox"},
    "uvicorn": {"sandbox"},  # ``web`` and ``up`` import it when they start, not for --help
    "celery": {"sync", "retry", "resync", "failures", "conflicts", "worker", "beat", "up"},
    "sqlalchemy": {
        *("sync", "retry", "resync", "db", "orgs", "entities", "customers"),
        *("connections", "runs", "failures", "conflicts", "audit"),
    },
    "fastapi": set(),
}

PROBE = """
import json, sys
sys.argv = ["crmsync", *json.loads(sys.argv[1])]
from cli.main import app
try:
    app()
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _imported(commands: list[list[str]]) -> list[set[str]]:
    """The top-level packages each ``crmsync ARGS`` has imported when it exits (run
    side by side, one process each)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    found = []
    for args, (out, err) in zip(commands, outputs, strict=True):
        assert out.strip(), f"crmsync {' '.join(args)} printed nothing: {err[-2000:]}"
        found.append(set(json.loads(out.splitlines()[-1])))
    return found


def test_help_imports_no_command_module() -> None:
    (imported,) = _imported([["--help"]])
    ours = {"sync", "tasks", "connectors", "api", "sandbox", "bench"}
    assert not imported & (ours | set(ONLY_FOR) | {"pydantic", "httpx", "redis"})


def test_each_command_imports_only_what_it_uses() -> None:
    names = list(COMMANDS)
    for name, imported in zip(names, _imported([[n, "--help"] for n in names]), strict=True):
        for package, users in ONLY_FOR.items():
            assert (package in imported) == (name in users), (name, package)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    command = load(name)
    assert command.name == name
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert first_paragraph == COMMANDS[name].help
