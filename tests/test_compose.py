"""docker-compose.yml stays true to the code: every crmsync service runs a real ``crmsync``
command (resolved through the Typer app, its options parsed) and is configured only with
real settings. Written over whatever services the file has, so new ones are checked too."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cli.main import app
from sync.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def is_crmsync(service: dict[str, Any]) -> bool:
    """A service that runs our image (built here), not a third-party one."""
    return "build" in service or str(service.get("image", "")).startswith("crmsync")


CRMSYNC_SERVICES = sorted(name for name, service in SERVICES.items() if is_crmsync(service))


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...]
        return dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def test_the_stack_has_its_services() -> None:
    assert {"postgres", "redis"} <= set(SERVICES)
    assert {"migrate", "web"} <= set(CRMSYNC_SERVICES)
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("name", CRMSYNC_SERVICES)
def test_command_is_a_real_crmsync_command(name: str) -> None:
    command = argv(SERVICES[name]["command"])
    assert command[0] == "crmsync", f"{name}: the command must run crmsync, not {command[0]}"
    args = command[1:]
    # Typer resolves the command path (an unknown command or option fails here) ...
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"{name}: crmsync {' '.join(args)}: {result.output}"
    # ... and down to a command, not a group ...
    path = [a for a in args if not a.startswith("-")]
    command_: Any = typer.main.get_command(app)
    words: list[str] = []
    while hasattr(command_, "list_commands"):  # a group
        assert path, f"{name}: crmsync {' '.join(words)} is a group, not a command"
        word = path.pop(0)
        sub = command_.get_command(command_.context_class(command_), word)
        assert sub is not None, f"{name}: no command {word!r} in crmsync {' '.join(words)}"
        command_, words = sub, [*words, word]
    # ... whose options parse and convert (a bad --port value fails here).
    command_.make_context(" ".join(["crmsync", *words]), args[len(words) :])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_crmsync_variables_are_real_settings(name: str) -> None:
    fields = set(Settings.model_fields)
    prefix = "CRMSYNC_"
    for variable in environment(SERVICES[name]):
        if variable.startswith(prefix):
            assert variable[len(prefix) :].lower() in fields, (
                f"{name}: {variable} is not a setting (sync/settings.py: {sorted(fields)})"
            )


@pytest.mark.parametrize("name", CRMSYNC_SERVICES)
def test_crmsync_services_use_the_compose_store(name: str) -> None:
    env = environment(SERVICES[name])
    assert "@postgres:" in env.get("CRMSYNC_DATABASE_URL", ""), name
    for dependency in SERVICES[name].get("depends_on") or {}:
        assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"


def test_web_healthcheck_calls_the_api_health_route() -> None:
    from api.app import create_app

    check = " ".join(argv(SERVICES["web"]["healthcheck"]["test"]))
    assert "/healthz" in check
    routes = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    assert "/healthz" in routes
