"""``crmsync connections``: an organisation's CRM connections.

Credentials are entered once, through options that also read an environment variable, or at
a hidden prompt; they are stored encrypted with ``CRMSYNC_SECRET_KEY`` and never printed.
A new connection is checked against the CRM (authentication and the field map) before it
is stored, unless ``--no-check``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from cli.db import session
from cli.orgs import require_organisation
from cli.output import (
    ExitCode,
    JsonOption,
    OrgOption,
    fail,
    print_json,
    print_record,
    print_table,
    say,
)
from connectors.errors import ConnectorError
from sync import connections
from sync.connections import ConnectionSetupError, ConnectionSpec
from sync.crypto import SecretKeyMissing
from sync.settings import Settings, get_settings
from sync.store import sync_repository as repo
from sync.store.db import engine_for
from sync.store.models import ConnectionRow

app = typer.Typer(name="connections", help="An organisation's CRM connections.")
add_app = typer.Typer(
    name="add",
    help="Add a connection to a CRM (checked against the CRM first).",
    no_args_is_help=True,
)
app.add_typer(add_app)

ConnectionArg = Annotated[
    str, typer.Argument(help="The connection's id or name.", show_default=False)
]


# --- shared by the operator commands -------------------------------------------------------


def settings_and_engine() -> tuple[Settings, Engine]:
    settings = get_settings()
    return settings, engine_for(settings.database_url)


def require_connection(opened: Session, organisation_id: str, ref: str) -> ConnectionRow:
    """The organisation's connection named or numbered ``ref``, or exit 3."""
    require_organisation(opened, organisation_id)
    found = repo.find_connection(opened, organisation_id.strip(), ref.strip())
    if found is None:
        fail(
            f"no connection {ref!r} in this organisation (see `crmsync connections list`)",
            ExitCode.NOT_FOUND,
        )
    return found


@contextmanager
def crm_errors(code: ExitCode = ExitCode.ERROR) -> Iterator[None]:
    """Turn the set-up and CRM errors an operator can fix into a message and an exit code."""
    try:
        yield
    except SecretKeyMissing as error:
        fail(str(error), ExitCode.ERROR)
    except ConnectionSetupError as error:
        fail(str(error), ExitCode.INVALID)
    except ConnectorError as error:
        fail(f"the CRM refused: {type(error).__name__}: {error}", code)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{what} {item!r} is not KEY=VALUE", ExitCode.INVALID)
        pairs[key.strip()] = value.strip()
    return pairs


def _setting_values(values: list[str] | None) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, value in _pairs(values, "--setting").items():
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def _field_map(values: list[str] | None) -> dict[str, str | None]:
    # FIELD= (nothing after the sign) unmaps a default field
    return {k: (v or None) for k, v in _pairs(values, "--map").items()}


MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map", help="Field map override FIELD=CRM_FIELD (repeat; FIELD= unmaps a field)."
    ),
]
DirectionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--direction",
        help="FIELD=both|crm_to_billing|billing_to_crm|none (repeat).",
    ),
]
SettingOption = Annotated[
    list[str] | None,
    typer.Option("--setting", help="Any connector setting KEY=VALUE (repeat; JSON values)."),
]
CaBundleOption = Annotated[
    str | None, typer.Option("--ca-bundle", help="A CA certificate file to trust for the CRM.")
]
MatchOption = Annotated[str, typer.Option("--match", help="Match rule mode: exact or normalized.")]
PolicyOption = Annotated[
    str,
    typer.Option("--create-policy", help="CRM records with no billing customer: create or ignore."),
]
PushCreatesOption = Annotated[
    bool,
    typer.Option(
        "--push-creates/--no-push-creates",
        help="Create CRM records for billing customers that have none.",
    ),
]
ScheduleOption = Annotated[
    int, typer.Option("--schedule", min=10, help="Seconds between scheduled syncs.")
]
CheckOption = Annotated[
    bool,
    typer.Option("--check/--no-check", help="Check credentials and field map with the CRM first."),
]


def _secret(value: str | None, prompt: str | None) -> str | None:
    if value:
        return value
    if prompt is None:
        return None
    # on stderr, so that --json output stays parseable
    entered: str = typer.prompt(prompt, hide_input=True, default="", show_default=False, err=True)
    return entered or None


def _add(
    org: str,
    spec: ConnectionSpec,
    *,
    check: bool,
    as_json: bool,
) -> None:
    settings = get_settings()
    with crm_errors(ExitCode.INVALID), session() as opened:
        require_organisation(opened, org)
        row = connections.add_connection(opened, settings, org.strip(), spec, check=check)
        data = connections.describe(row)
    if as_json:
        print_json(data)
        return
    say(f"Added {spec.kind} connection [bold]{spec.name}[/] ({data['id']}).")
    if spec.kind == "salesforce":
        say(f"Outbound Message URL: {settings.public_base_url}/webhooks/salesforce/{data['id']}")
    else:
        say(f"Webhook target URL:   {settings.public_base_url}/webhooks/hubspot/{data['id']}")


@add_app.command("salesforce")
def add_salesforce(
    name: Annotated[str, typer.Argument(help="A name for the connection.", show_default=False)],
    org: OrgOption,
    instance_url: Annotated[
        str, typer.Option(help="https://yourorg.my.salesforce.com", show_default=False)
    ],
    organization_id: Annotated[
        str | None, typer.Option(help="The org id Outbound Messages must name (00D...).")
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(envvar="SALESFORCE_CLIENT_ID", help="OAuth client id (connected app)."),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="SALESFORCE_CLIENT_SECRET",
            show_default=False,
            help="OAuth client secret (prompted, hidden, when no credential is given).",
        ),
    ] = None,
    access_token: Annotated[
        str | None,
        typer.Option(envvar="SALESFORCE_ACCESS_TOKEN", show_default=False, help="Access token."),
    ] = None,
    refresh_token: Annotated[
        str | None,
        typer.Option(envvar="SALESFORCE_REFRESH_TOKEN", show_default=False, help="Refresh token."),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            envvar="SALESFORCE_WEBHOOK_SECRET",
            show_default=False,
            help="Secret Outbound Messages carry (?secret= or X-Crmsync-Secret).",
        ),
    ] = None,
    external_id_field: Annotated[
        str, typer.Option(help="Account External ID field holding the billing id.")
    ] = "crmsync_id__c",
    ca_bundle: CaBundleOption = None,
    field_map: MapOption = None,
    direction: DirectionOption = None,
    setting: SettingOption = None,
    match: MatchOption = "exact",
    create_policy: PolicyOption = "create",
    push_creates: PushCreatesOption = True,
    schedule: ScheduleOption = 900,
    check: CheckOption = True,
    as_json: JsonOption = False,
) -> None:
    """Add a Salesforce connection (Accounts <-> customers). Exit 4 when the CRM refuses."""
    if not (access_token or refresh_token or client_secret):
        client_secret = _secret(None, "Salesforce OAuth client secret")
    if client_secret and not client_id:
        fail("--client-id is needed with a client secret", ExitCode.INVALID)
    credentials = {
        "client_id": client_id,
        "client_secret": client_secret,
        "access_token": access_token,
        "refresh_token": refresh_token,
        "webhook_secret": webhook_secret,
    }
    options: dict[str, Any] = {
        "instance_url": instance_url,
        "external_id_field": external_id_field,
        **({"organization_id": organization_id} if organization_id else {}),
        **({"ca_bundle": ca_bundle} if ca_bundle else {}),
        **_setting_values(setting),
    }
    _add(
        org,
        _spec(
            "salesforce",
            name,
            credentials,
            options,
            field_map,
            direction,
            match,
            create_policy,
            push_creates,
            schedule,
        ),
        check=check,
        as_json=as_json,
    )


def _spec(
    kind: str,
    name: str,
    credentials: dict[str, str | None],
    options: dict[str, Any],
    field_map: list[str] | None,
    direction: list[str] | None,
    match: str,
    create_policy: str,
    push_creates: bool,
    schedule: int,
) -> ConnectionSpec:
    """The connection an ``add`` command describes (empty credentials left out)."""
    return ConnectionSpec(
        name=name,
        kind=kind,
        credentials={k: v for k, v in credentials.items() if v},
        settings=options,
        field_map=_field_map(field_map),
        directions=_pairs(direction, "--direction"),
        match_mode=match,
        create_policy=create_policy,
        push_creates=push_creates,
        schedule_seconds=schedule,
    )


@add_app.command("hubspot")
def add_hubspot(
    name: Annotated[str, typer.Argument(help="A name for the connection.", show_default=False)],
    org: OrgOption,
    host: Annotated[str, typer.Option(help="The HubSpot API base URL.")] = (
        "https://api.hubapi.com"
    ),
    access_token: Annotated[
        str | None,
        typer.Option(
            envvar="HUBSPOT_ACCESS_TOKEN",
            show_default=False,
            help="Private app / OAuth access token (prompted, hidden, when not given).",
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="HUBSPOT_CLIENT_SECRET",
            show_default=False,
            help="The app's client secret (verifies webhook signatures).",
        ),
    ] = None,
    external_id_property: Annotated[
        str, typer.Option(help="Unique company property holding the billing id.")
    ] = "crmsync_id",
    accept_signature_v1_v2: Annotated[
        bool, typer.Option(help="Accept webhooks signed v1/v2 (no timestamp).")
    ] = False,
    ca_bundle: CaBundleOption = None,
    field_map: MapOption = None,
    direction: DirectionOption = None,
    setting: SettingOption = None,
    match: MatchOption = "exact",
    create_policy: PolicyOption = "create",
    push_creates: PushCreatesOption = True,
    schedule: ScheduleOption = 900,
    check: CheckOption = True,
    as_json: JsonOption = False,
) -> None:
    """Add a HubSpot connection (companies <-> customers). Exit 4 when the CRM refuses."""
    access_token = _secret(access_token, "HubSpot access token")
    if not access_token:
        fail("a HubSpot access token is required", ExitCode.INVALID)
    credentials = {"access_token": access_token, "client_secret": client_secret}
    options: dict[str, Any] = {
        "host": host,
        "external_id_property": external_id_property,
        "accept_signature_v1_v2": accept_signature_v1_v2,
        **({"ca_bundle": ca_bundle} if ca_bundle else {}),
        **_setting_values(setting),
    }
    _add(
        org,
        _spec(
            "hubspot",
            name,
            credentials,
            options,
            field_map,
            direction,
            match,
            create_policy,
            push_creates,
            schedule,
        ),
        check=check,
        as_json=as_json,
    )


@app.command("list")
def list_(org: OrgOption, as_json: JsonOption = False) -> None:
    """List the organisation's connections."""
    with session() as opened:
        require_organisation(opened, org)
        rows = [connections.describe(r) for r in repo.list_connections(opened, org.strip())]
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "name", "kind", "state", "every (s)", "last sync", "next sync"],
        [
            (
                r["id"],
                r["name"],
                r["kind"],
                r["state"],
                r["schedule_seconds"],
                r["last_sync_at"],
                r["next_sync_at"],
            )
            for r in rows
        ],
        title="Connections",
    )


@app.command()
def show(connection: ConnectionArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Show one connection (never its credentials), with its links, conflicts and failures."""
    with session() as opened:
        row = require_connection(opened, org, connection)
        data = connections.describe(row)
        data["links"] = repo.count_links(opened, row.id)
        data["open_conflicts"] = repo.count_conflicts(opened, row.id)
        data["open_failures"] = len(
            repo.open_failures(opened, row.organisation_id, connection_id=row.id)
        )
        data["credentials"] = "(stored encrypted)"
    if as_json:
        print_json(data)
        return
    print_record(
        {k: json.dumps(v) if isinstance(v, dict) else v for k, v in data.items()},
        title="Connection",
    )


@app.command()
def test(connection: ConnectionArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Authenticate with the CRM and check the field map. Exit 1 when the CRM refuses."""
    settings = get_settings()
    with session() as opened:
        row = require_connection(opened, org, connection)
        name = row.name
        with crm_errors(ExitCode.ERROR):
            connections.open_connector(settings, row).check()
    if as_json:
        print_json({"connection": name, "ok": True})
        return
    say(f"Connection [bold]{name}[/]: the CRM accepted the credentials and the field map.")


def _set_state(org: str, connection: str, state: str, as_json: bool) -> None:
    with session() as opened:
        row = require_connection(opened, org, connection)
        connections.set_state(row, state)
        data = connections.describe(row)
    if as_json:
        print_json(data)
        return
    say(f"Connection [bold]{data['name']}[/] is {state}.")


@app.command()
def pause(connection: ConnectionArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Pause a connection: the scheduler skips it and webhook events wait in the inbox."""
    _set_state(org, connection, "paused", as_json)


@app.command()
def resume(connection: ConnectionArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Resume a paused connection (it is due for a sync at once)."""
    _set_state(org, connection, "active", as_json)


@app.command("set")
def set_(
    connection: ConnectionArg,
    org: OrgOption,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    credential: Annotated[
        list[str] | None,
        typer.Option(
            "--credential",
            help="A credential to replace (e.g. client_secret, access_token, webhook_secret); "
            "its new value is asked at a hidden prompt (repeat).",
        ),
    ] = None,
    ca_bundle: CaBundleOption = None,
    field_map: MapOption = None,
    direction: DirectionOption = None,
    setting: SettingOption = None,
    match: Annotated[str | None, typer.Option("--match", help="exact or normalized.")] = None,
    create_policy: Annotated[
        str | None, typer.Option("--create-policy", help="create or ignore.")
    ] = None,
    push_creates: Annotated[
        bool | None, typer.Option("--push-creates/--no-push-creates", show_default=False)
    ] = None,
    schedule: Annotated[int | None, typer.Option("--schedule", min=10)] = None,
    check: CheckOption = True,
    as_json: JsonOption = False,
) -> None:
    """Change a connection's options (and credentials, entered at a hidden prompt)."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    secrets = {}
    for key in credential or []:
        value = _secret(None, f"New value of {key}")
        if not value:
            fail(f"no value given for {key}", ExitCode.INVALID)
        secrets[key] = value
    if secrets:
        changes["credentials"] = secrets
    options = _setting_values(setting)
    if ca_bundle:
        options["ca_bundle"] = ca_bundle
    if options:
        changes["settings"] = options
    if field_map:
        changes["field_map"] = _field_map(field_map)
    if direction:
        changes["directions"] = _pairs(direction, "--direction")
    optional: tuple[tuple[str, Any], ...] = (
        ("match_mode", match),
        ("create_policy", create_policy),
        ("push_creates", push_creates),
        ("schedule_seconds", schedule),
    )
    for key, value in optional:
        if value is not None:
            changes[key] = value
    if not changes:
        fail("nothing to change: give at least one option", ExitCode.USAGE)
    settings = get_settings()
    with crm_errors(ExitCode.INVALID), session() as opened:
        row = require_connection(opened, org, connection)
        connections.update_connection(opened, settings, row, changes, check=check)
        data = connections.describe(row)
    if as_json:
        print_json(data)
        return
    say(f"Connection [bold]{data['name']}[/] updated: {', '.join(sorted(changes))}.")


__all__ = ["app", "crm_errors", "require_connection", "settings_and_engine"]
