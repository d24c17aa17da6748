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


def _resolves(args: list[str]) -> None:
    """``crmsync ARGS`` names a real command whose options parse (as the services' are)."""
    path = [a for a in args if not a.startswith("-")]
    command_: Any = typer.main.get_command(app)
    words: list[str] = []
    while hasattr(command_, "list_commands"):
        assert path, f"crmsync {' '.join(words)} is a group, not a command"
        word = path.pop(0)
        command_ = command_.get_command(command_.context_class(command_), word)
        assert command_ is not None, f"no command {word!r} in crmsync {' '.join(words)}"
        words.append(word)
    command_.make_context(" ".join(["crmsync", *words]), args[len(words) :])


@pytest.mark.parametrize(
    "name", sorted(n for n in CRMSYNC_SERVICES if "healthcheck" in SERVICES[n])
)
def test_healthchecks_check_the_service_itself(name: str) -> None:
    """No crmsync healthcheck is a mere ping of a dependency: each asks the service (the
    web's own route, the worker by its node name, beat's heartbeat)."""
    check = argv(SERVICES[name]["healthcheck"]["test"])
    assert check[0] in ("CMD", "CMD-SHELL")
    text = " ".join(check[1:])
    assert "redis.Redis" not in text and "redis-cli" not in text, f"{name}: {text}"
    if check[1] == "crmsync":
        _resolves(check[2:])
    expected = {"web": "/healthz", "worker": "inspect ping", "beat": "crmsync health beat"}
    if name in expected:
        assert expected[name] in text, f"{name}: {text}"


def test_prometheus_scrapes_the_metrics_crmsync_serves() -> None:
    from api.app import create_app

    assert "prometheus" in SERVICES
    volumes = " ".join(SERVICES["prometheus"].get("volumes", []))
    config_file = ROOT / volumes.split(":")[0].removeprefix("./")
    config = yaml.safe_load(config_file.read_text())
    targets = {
        target: job.get("metrics_path", "/metrics")
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    routes = create_app(Settings()).openapi()["paths"]
    web_port = argv(SERVICES["web"]["command"])
    assert targets.get(f"web:{web_port[web_port.index('--port') + 1]}") == "/metrics"
    assert "/metrics" in routes
    worker = argv(SERVICES["worker"]["command"])
    assert targets.get(f"worker:{worker[worker.index('--metrics-port') + 1]}") == "/metrics"
    assert set(targets) == {t for t in targets if t.split(":")[0] in SERVICES}


def _crmsync_families() -> set[str]:
    """Every metric family crmsync defines (counters as Prometheus names them)."""
    import connectors.telemetry
    import sync.telemetry
    import tasks.metrics

    names: set[str] = set()
    for module in (sync.telemetry, connectors.telemetry, tasks.metrics):
        for value in vars(module).values():
            describe = getattr(value, "describe", None)
            if callable(describe) and hasattr(value, "_name"):
                for family in describe():
                    names.add(family.name + ("_total" if family.type == "counter" else ""))
    names |= {"crmsync_open_conflicts", "crmsync_open_failures", "crmsync_queue_depth"}
    return names


def test_the_grafana_dashboard_charts_every_family_and_only_real_ones() -> None:
    import json
    import re

    families = _crmsync_families()
    assert all(name.startswith("crmsync_") for name in families)
    volumes = SERVICES["grafana"]["volumes"]
    folder = next(v.split(":")[0] for v in volumes if v.endswith("/dashboards:ro"))
    dashboards = list((ROOT / folder.removeprefix("./")).glob("*.json"))
    assert dashboards
    used: set[str] = set()
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"crmsync_[a-z_]+", target["expr"]):
                    used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used <= families, f"the dashboard charts unknown metrics {used - families}"
    assert families <= used, f"the dashboard leaves out {families - used}"
