"""Every command of issue 2 through the CLI runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from typer.testing import CliRunner

from cli.main import app
from cli.output import ExitCode
from sync import customers, organisations
from sync.customer import CustomerIn
from sync.store.db import engine_for, make_engine, transaction
from tests.cli.conftest import Run, as_json


def test_exit_codes_are_documented() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4]
    assert "0 ok, 1 error, 2 usage, 3 not found, 4 invalid input" in (app.info.help or "")


def test_help_lists_every_group(run: Run) -> None:
    out = run("--help").stdout
    for name in ("db", "orgs", "entities", "customers", "web"):
        assert name in out
    assert "No such command" in run("nope", code=ExitCode.USAGE).stderr


@pytest.mark.parametrize("name", ["sync", "retry", "resync", "web", "worker", "beat", "up"])
def test_a_commands_help_offers_no_shell_completion(run: Run, name: str) -> None:
    # completion is installed once, for crmsync: `crmsync up --install-completion` is noise
    out = run(name, "--help").stdout
    assert f"crmsync {name}" in out
    assert "completion" not in out
    assert "completion" in run("--help").stdout


def test_db_upgrade_creates_the_tables_and_is_repeatable(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", url)
    assert "head" in run("db", "upgrade").stdout
    run("db", "upgrade")
    engine = make_engine(url)
    assert "customers" in inspect(engine).get_table_names()
    engine.dispose()


def test_a_store_that_is_not_set_up_is_a_clear_error(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", url)
    result = run("orgs", "list", code=ExitCode.ERROR)
    assert "crmsync db upgrade" in result.stderr
    engine_for(url).dispose()


def test_a_postgresql_database_that_does_not_exist_is_not_called_unmigrated(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_url(postgres_url)

    def orgs_list(url: URL) -> str:
        monkeypatch.setenv("CRMSYNC_DATABASE_URL", url.render_as_string(hide_password=False))
        result = CliRunner().invoke(app, ["orgs", "list"])
        engine_for(url.render_as_string(hide_password=False)).dispose()
        assert result.exit_code == ExitCode.ERROR, result.stdout + result.stderr
        return result.stderr

    # an empty schema: tables missing, so `crmsync db upgrade` is the fix
    empty = server.update_query_dict({"options": f"-csearch_path=missing_{uuid.uuid4().hex}"})
    assert "crmsync db upgrade" in orgs_list(empty)
    # no such database: `db upgrade` would fail too; the server's words say what is wrong
    missing = orgs_list(server.set(database=f"crmsync_missing_{uuid.uuid4().hex[:8]}", query={}))
    assert "does not exist" in missing
    assert "db upgrade" not in missing
    engine_for.cache_clear()


def test_orgs_create_prints_id_and_key_once(run: Run, settings_env: str) -> None:
    created = as_json(run("orgs", "create", "Acme", "--json"))
    assert set(created) == {"id", "api_key"}
    with transaction(engine_for(settings_env)) as session:
        assert organisations.authenticate(session, created["id"], created["api_key"])
    human = run("orgs", "create", "Beta").stdout
    assert "API key: crm_" in human
    assert "only this once" in human
    listed = run("orgs", "list").stdout
    assert "Acme" in listed
    assert created["api_key"] not in listed
    listed_json = as_json(run("orgs", "list", "--json"))
    assert [o["name"] for o in listed_json] == ["Acme", "Beta"]
    assert all("api_key" not in o for o in listed_json)


def test_orgs_create_refuses_a_blank_name(run: Run) -> None:
    assert "blank" in run("orgs", "create", "  ", code=ExitCode.INVALID).stderr


def test_entities_create_and_list(run: Run, org: str) -> None:
    entity = as_json(run("entities", "create", "Acme EU", "--org", org, "--json"))
    assert entity["name"] == "Acme EU"
    assert entity["organisation_id"] == org
    assert "Acme US" in run("entities", "create", "Acme US", "--org", org).stdout
    listed = as_json(run("entities", "list", "--org", org, "--json"))
    assert [e["name"] for e in listed] == ["Acme EU", "Acme US"]
    assert entity["id"] in run("entities", "list", "--org", org).stdout


def test_organisation_is_explicit_and_must_exist(run: Run, org: str) -> None:
    for command in (["entities", "list"], ["customers", "list"]):
        assert "--org" in run(*command, code=ExitCode.USAGE).stderr
        missing = run(*command, "--org", "no-such-org", code=ExitCode.NOT_FOUND)
        assert "no organisation 'no-such-org'" in missing.stderr
    assert run("entities", "list", "--org", org, "--json").stdout.strip() == "[]"


def _seed(database_url: str, org: str, count: int) -> list[str]:
    with transaction(engine_for(database_url)) as session:
        return [
            str(
                customers.create_customer(
                    session,
                    org,
                    CustomerIn(
                        customer_name=f"Customer {i}",
                        external_id=f"EXT-{i}",
                        email=f"c{i}@example.com",
                        address={"city": "Paris", "country_code": "FR"},  # type: ignore[arg-type]
                        tax_info=[{"jurisdiction": "FR", "tax_type": "VAT", "value": "FR1"}],  # type: ignore[list-item]
                        custom_data={"tier": "gold", "users": [1]},
                    ),
                ).id
            )
            for i in range(count)
        ]


def test_customers_list_and_show(run: Run, org: str, settings_env: str) -> None:
    ids = _seed(settings_env, org, 3)
    listed = as_json(run("customers", "list", "--org", org, "--json"))
    assert sorted(c["id"] for c in listed) == sorted(ids)
    page = as_json(run("customers", "list", "--org", org, "--limit", "2", "--json"))
    assert len(page) == 2
    rest = as_json(run("customers", "list", "--org", org, "--offset", "2", "--json"))
    assert {c["id"] for c in page + rest} == set(ids)
    # past SQL's 64-bit OFFSET: a usage error (it was an OverflowError's traceback)
    last = run("customers", "list", "--org", org, "--offset", str(2**63 - 1), "--json")
    assert as_json(last) == []
    huge = run("customers", "list", "--org", org, "--offset", str(2**63), code=ExitCode.USAGE)
    assert "--offset" in huge.stderr
    by_external = as_json(
        run("customers", "list", "--org", org, "--external-id", "EXT-1", "--json")
    )
    assert [c["id"] for c in by_external] == [ids[1]]
    assert "Customer 0" in run("customers", "list", "--org", org).stdout

    shown = as_json(run("customers", "show", ids[0], "--org", org, "--json"))
    assert shown["customer_name"] == "Customer 0"
    assert shown["custom_data"] == {"tier": "gold", "users": [1]}
    human = run("customers", "show", ids[0], "--org", org).stdout
    assert "address.country_code" in human
    assert "FR VAT FR1" in human


def test_customers_show_is_scoped_to_the_organisation(
    run: Run, org: str, settings_env: str
) -> None:
    (customer,) = _seed(settings_env, org, 1)
    other = as_json(run("orgs", "create", "Other", "--json"))["id"]
    for wanted in (customer, "not-a-uuid"):
        result = run("customers", "show", wanted, "--org", other, code=ExitCode.NOT_FOUND)
        assert "no customer" in result.stderr
    assert as_json(run("customers", "list", "--org", other, "--json")) == []


def test_web_serves_the_app_factory(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    run("web", "--host", "0.0.0.0", "--port", "8123")
    (args, kwargs), *_ = calls
    assert args == ("api.app:create_app",)
    assert kwargs["factory"] is True
    assert (kwargs["host"], kwargs["port"]) == ("0.0.0.0", 8123)
    run("web", "--port", "0", code=ExitCode.USAGE)


def test_worker_refuses_a_bad_pool_or_queue_before_it_starts(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import metrics

    served: list[int] = []
    monkeypatch.setattr(metrics, "serve_worker_metrics", served.append)
    # Celery's own check of --pool was a traceback
    bad_pool = run("worker", "--pool", "bogus", code=ExitCode.USAGE)
    assert "unknown pool 'bogus'; choose from prefork, threads, solo" in bad_pool.stderr
    bad_queue = run("worker", "--queues", "nope", code=ExitCode.USAGE)
    assert "unknown queue(s) ['nope']" in bad_queue.stderr
    assert served == []  # its metrics port was taken before the queues were checked


def test_web_on_another_port_warns_of_the_default_public_url(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.delenv("CRMSYNC_PUBLIC_BASE_URL", raising=False)
    # webhook URLs, console links and HubSpot signatures would name port 8000
    warned = run("web", "--port", "9123").stderr
    assert "CRMSYNC_PUBLIC_BASE_URL is not set" in warned and "port 9123" in warned
    assert "CRMSYNC_PUBLIC_BASE_URL" not in run("web", "--port", "8000").stderr
    monkeypatch.setenv("CRMSYNC_PUBLIC_BASE_URL", "https://crmsync.example.com")
    assert "CRMSYNC_PUBLIC_BASE_URL" not in run("web", "--port", "9123").stderr


def test_web_on_a_port_in_use_is_an_error_that_says_so(run: Run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # uvicorn's own exit code (3) would read as crmsync's "not found"
        result = run("web", "--port", str(port), code=ExitCode.ERROR)
    assert f"could not serve on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr


def test_the_printed_plan_has_a_section_for_everything_a_plan_holds() -> None:
    """`crmsync sync NAME --plan` prints each of the plan's sections (it printed none of
    the contacts' once: a run's contact creates and adoptions were shown only with --json)."""
    from dataclasses import fields

    from cli.sync_cmd import PLAN_SECTIONS
    from sync.plan import Plan

    assert sorted(key for key, _ in PLAN_SECTIONS) == sorted(f.name for f in fields(Plan))
