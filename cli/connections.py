"""``crmsync connections``: an organisation's CRM connections.

Credentials are entered once, through options that also read an environment variable, or at
a hidden prompt; they are stored encrypted with ``CRMSYNC_SECRET_KEY`` and never printed.
A new connection is checked against the CRM (authentication and the field map) before it
is stored, unless ``--no-check``.

``connections add KEY`` exists for every installed connector, built-in or plug-in: its
options are made from the connector's settings and credentials models (secrets read from
``--option``, ``KEY_OPTION`` in the environment or a hidden prompt) and what is given is
checked by those models, in their own words (``connectors.setup``).
"""

from __future__ import annotations

import getpass
import inspect
import json
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.core import TyperGroup

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
from connectors import registry
from connectors.base import Connector, webhook_setup_for
from connectors.errors import ConfigError
from connectors.setup import OptionField, option_fields
from sync import connections
from sync.connections import ConnectionSpec
from sync.settings import Settings, get_settings
from sync.store import sync_repository as repo
from sync.store.db import engine_for
from sync.store.models import ConnectionRow

app = typer.Typer(name="connections", help="An organisation's CRM connections.")

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


def connection_option(organisation_id: str, ref: str | None) -> str | None:
    """The id of the organisation's connection named by ``--connection`` (None without
    it); exit 3 when the organisation or the connection is not found."""
    with session() as opened:
        require_organisation(opened, organisation_id)
        return require_connection(opened, organisation_id, ref).id if ref else None


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
    bool | None,
    typer.Option(
        "--push-creates/--no-push-creates",
        show_default=False,
        help="Create CRM records for billing customers that have none. Not given: yes for an "
        "organisation without customers yet, no when it has some (a first sync then creates "
        "no CRM records unless --push-creates is given).",
    ),
]
ScheduleOption = Annotated[
    int, typer.Option("--schedule", min=10, help="Seconds between scheduled syncs.")
]
CheckOption = Annotated[
    bool,
    typer.Option("--check/--no-check", help="Check credentials and field map with the CRM first."),
]
AlertWebhookOption = Annotated[
    str | None,
    typer.Option(
        "--alert-webhook",
        show_default=False,
        help="POST alerts here (Slack-compatible JSON, HMAC-signed): runs failing in a row, "
        "a pause by the CRM's daily limit, a digest of new conflicts. '' turns alerts off.",
    ),
]
AlertSecretOption = Annotated[
    str | None,
    typer.Option(
        "--alert-secret",
        envvar="ALERT_WEBHOOK_SECRET",
        show_default=False,
        help="The secret alerts are signed with (prompted, hidden, when an alert webhook is "
        "given without it; e.g. `openssl rand -hex 32`).",
    ),
]


def _secret(value: str | None, prompt: str | None, hint: str = "") -> str | None:
    """``value``, else what is entered at a hidden prompt (or piped on stdin). Nothing to
    read (a script with stdin at its end) is a usage error that says how to give it: it
    was click's bare "Aborted!"."""
    if value:
        return value
    if prompt is None:
        return None
    try:
        with warnings.catch_warnings():
            # getpass's "Can not control echo" (no terminal): it prints its own warning
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            # on stderr, so that --json output stays parseable
            entered: str = typer.prompt(
                prompt, hide_input=True, default="", show_default=False, err=True
            )
    except typer.Abort:
        fail(f"no {prompt} given: {hint or 'enter it at the prompt'}", ExitCode.USAGE)
    return entered or None


def _set_alerts(
    settings: Settings, row: ConnectionRow, url: str | None, secret: str | None
) -> None:
    """Point the connection's alerts at ``url`` (signed with a secret entered once)."""
    from sync.alerts import set_alert_webhook

    if url:
        secret = _secret(
            secret,
            "alert signing secret",
            "give --alert-secret, set ALERT_WEBHOOK_SECRET or enter it at the prompt",
        )
    set_alert_webhook(settings, row, url, secret)


def _add(
    org: str,
    spec: ConnectionSpec,
    *,
    check: bool,
    as_json: bool,
    alert_webhook: str | None = None,
    alert_secret: str | None = None,
) -> None:
    settings = get_settings()
    with session() as opened:
        require_organisation(opened, org)
        row = connections.add_connection(opened, settings, org.strip(), spec, check=check)
        if alert_webhook:
            _set_alerts(settings, row, alert_webhook, alert_secret)
        data = connections.describe(row)
        data["unmapped_fields"] = connections.unmapped(settings, row)
        existing = connections.existing_customers(opened, row.organisation_id)
        data["first_sync_creates_up_to"] = connections.first_sync_creates(opened, row)
    if as_json:
        print_json(data)
        return
    say(f"Added {spec.kind} connection [bold]{spec.name}[/] ({data['id']}).")
    _say_unmapped(data["unmapped_fields"])
    _say_first_sync(existing, data["first_sync_creates_up_to"])
    connector = registry.connector_class(spec.kind)
    if connector.capabilities.webhooks:
        url = f"{settings.public_base_url}/webhooks/{spec.kind}/{data['id']}"
        say(webhook_setup_for(connector, url))  # names a secret, never prints one
        secrets = connector.credentials_model.model_fields
        if "webhook_secret" in secrets and not spec.credentials.get("webhook_secret"):
            say(
                "The connection has no webhook secret yet: until `crmsync connections set "
                f"{spec.name} --org {org} --credential webhook_secret`, every webhook is "
                "refused."
            )


def _say_unmapped(unmapped: dict[str, str]) -> None:
    """The customer fields the connection leaves out, each with why."""
    if not unmapped:
        return
    say("Not mapped (these fields are not synced):")
    for name, why in unmapped.items():
        say(f"  {name}: {why}")


def _say_first_sync(existing: int, creates: int) -> None:
    """What a first sync would do to the CRM with the organisation's billing customers."""
    if not existing:
        return
    if creates:
        say(
            f"The first sync may create up to {creates} CRM records: the billing customers "
            "the CRM does not hold yet (--no-push-creates would not create any)."
        )
        return
    say(
        f"The organisation has {existing} billing customers: the first sync creates no CRM "
        f"records for them (it links those the CRM holds, by external ID). To create the "
        f"others in the CRM (up to {existing}), add the connection with --push-creates, or "
        "later: crmsync connections set NAME --push-creates."
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
    push_creates: bool | None,
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


def _add_options(connector: type[Connector]) -> list[inspect.Parameter]:
    """The connector's own options, from its settings and credentials models."""
    params = []
    for field in option_fields(connector):
        kind: Any = {"int": int, "float": float, "bool": bool}.get(field.kind, str)
        required = field.required and not field.credential  # a missing secret is prompted
        names = [f"{field.option}/--no-{field.option[2:]}"] if kind is bool else [field.option]
        default = f" (default: {field.default})" if field.default not in (None, "") else ""
        envvar = field.envvar(connector.key)
        if envvar:  # said in the help: the option's own env var column is left out
            default += f" Also read from {envvar}."
        option = typer.Option(
            *names,
            help=field.help + default,
            envvar=envvar,
            show_default=False,
            show_envvar=False,
        )
        annotation = Annotated[kind if required else kind | None, option]  # type: ignore[valid-type]
        params.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation,
                **({} if required else {"default": None}),
            )
        )
    return params


#: ``connections add KEY``'s options that every connector shares, after its own
_COMMON_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("field_map", MapOption, None),
    ("direction", DirectionOption, None),
    ("setting", SettingOption, None),
    ("match", MatchOption, "exact"),
    ("create_policy", PolicyOption, "create"),
    ("push_creates", PushCreatesOption, None),
    ("schedule", ScheduleOption, 900),
    ("check", CheckOption, True),
    ("alert_webhook", AlertWebhookOption, None),
    ("alert_secret", AlertSecretOption, None),
    ("as_json", JsonOption, False),
)


def add_command(key: str) -> Callable[..., None]:
    """``connections add KEY``: the command for one installed connector, its options made
    from the connector's settings and credentials models (see ``connectors.setup``)."""
    connector = registry.connector_class(key)
    fields = {f.name: f for f in option_fields(connector)}

    def add(**values: Any) -> None:
        name, org = values.pop("name"), values.pop("org")
        common = {k: values.pop(k) for k, _, _ in _COMMON_OPTIONS}
        credentials = {k: v for k, v in values.items() if fields[k].credential}
        _prompt_missing_credentials(key, connector, fields, credentials)
        options = {k: v for k, v in values.items() if not fields[k].credential and v is not None}
        options.update(_setting_values(common["setting"]))
        _add(
            org,
            _spec(
                key,
                name,
                credentials,
                options,
                common["field_map"],
                common["direction"],
                common["match"],
                common["create_policy"],
                common["push_creates"],
                common["schedule"],
            ),
            check=common["check"],
            as_json=common["as_json"],
            alert_webhook=common["alert_webhook"],
            alert_secret=common["alert_secret"],
        )

    # typer reads a command's options from its signature: this one's are the connector's
    params = _add_parameters(connector)
    add.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    add.__annotations__ = {p.name: p.annotation for p in params}
    add.__doc__ = _add_help(key, connector)
    return add


def _prompt_missing_credentials(
    key: str,
    connector: type[Connector],
    fields: dict[str, OptionField],
    credentials: dict[str, Any],
) -> None:
    """Ask at the prompt for each credential the options left out (secrets are better not
    typed on a command line), saying which option or env var would give it instead."""
    for missing in connector.credentials_model.to_prompt(credentials):
        option = f"--{missing.replace('_', '-')}"
        envvar = fields[missing].envvar(key) if missing in fields else None
        hint = f"give {option}" + (f", set {envvar}" if envvar else "")
        credentials[missing] = _secret(
            None,
            f"{key} {missing.replace('_', ' ')}",
            f"{hint} or enter it at the prompt (`crmsync connections add {key} --help` "
            "lists every credential option)",
        )


def _add_parameters(connector: type[Connector]) -> list[inspect.Parameter]:
    """``connections add KEY``'s parameters: the connection's name, the organisation, the
    connector's own options, then those every connector shares."""
    return [
        inspect.Parameter(
            "name",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str, typer.Argument(help="A name for the connection.", show_default=False)
            ],
        ),
        inspect.Parameter("org", inspect.Parameter.KEYWORD_ONLY, annotation=OrgOption),
        *_add_options(connector),
        *(
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
            for n, a, d in _COMMON_OPTIONS
        ),
    ]


def _add_help(key: str, connector: type[Connector]) -> str:
    """The command's help: the first line of the connector's settings model's docstring."""
    summary = (connector.settings_model.__doc__ or f"A {key} connection.").strip().splitlines()[0]
    return f"Add {summary[0].lower()}{summary[1:]} Exit 4 when the CRM refuses."


class ConnectorCommands(TyperGroup):
    """``connections add KEY``: one command per installed connector, made when it is asked
    for (so that ``crmsync --help`` loads no connector)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return registry.loadable()  # a broken plug-in is in `crmsync connectors list`

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in registry.available():
            return None
        try:
            command = add_command(cmd_name)
        except ConfigError as error:  # a broken plug-in: say so, not a traceback
            fail(f"{error}; `crmsync connectors list` shows each connector", ExitCode.ERROR)
        one = typer.Typer(add_completion=False)
        one.command(cmd_name)(command)
        return typer.main.get_command(one)


add_app = typer.Typer(
    name="add",
    cls=ConnectorCommands,
    help="Add a connection to a CRM (checked against the CRM first).",
    no_args_is_help=True,
)
app.add_typer(add_app)


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
                _state_text(r),
                r["schedule_seconds"],
                r["last_sync_at"],
                r["next_sync_at"],
            )
            for r in rows
        ],
        title="Connections",
    )


def _state_text(described: dict[str, Any]) -> str:
    """The state as an operator reads it: a pause by the CRM's limit says until when."""
    pause = described.get("paused_by_limit")
    if pause:
        return f"paused by CRM limit until {pause['until']} ({pause['reason']})"
    return str(described["state"])


@app.command()
def show(connection: ConnectionArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Show one connection (never its credentials), with its links, conflicts and failures,
    and the customer fields it does not map, with why."""
    settings = get_settings()
    with session() as opened:
        row = require_connection(opened, org, connection)
        data = connections.describe(row)
        data["unmapped_fields"] = connections.unmapped(settings, row)
        data["links"] = repo.count_links(opened, row.id)
        data["open_conflicts"] = repo.count_conflicts(opened, row.id)
        data["open_failures"] = len(
            repo.open_failures(opened, row.organisation_id, connection_id=row.id)
        )
        data["credentials"] = "(stored encrypted)"
    if as_json:
        print_json(data)
        return
    unmapped = data.pop("unmapped_fields")
    data.pop("fields_the_crm_lacks")  # shown with the unmapped fields
    print_record(
        {k: json.dumps(v) if isinstance(v, dict) else v for k, v in data.items()},
        title="Connection",
    )
    _say_unmapped(unmapped)


@app.command()
def test(connection: ConnectionArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Authenticate with the CRM and check the field map. Exit 4 when the CRM refuses the
    credentials or the map, 1 when it cannot be reached."""
    settings = get_settings()
    with session() as opened:
        row = require_connection(opened, org, connection)
        name = row.name
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


CredentialOption = Annotated[
    list[str] | None,
    typer.Option(
        "--credential",
        help="A credential to replace (e.g. client_secret, access_token, webhook_secret); "
        "its new value is asked at a hidden prompt (repeat).",
    ),
]


@app.command("set")
def set_(
    connection: ConnectionArg,
    org: OrgOption,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    credential: CredentialOption = None,
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
    alert_webhook: AlertWebhookOption = None,
    alert_secret: AlertSecretOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a connection's options (and credentials, entered at a hidden prompt)."""
    changes: dict[str, Any] = {"name": name} if name is not None else {}
    secrets = _new_credentials(credential or [])
    if secrets:
        changes["credentials"] = secrets
    changes.update(_setting_changes(setting, ca_bundle, field_map, direction))
    optional: tuple[tuple[str, Any], ...] = (
        ("match_mode", match),
        ("create_policy", create_policy),
        ("push_creates", push_creates),
        ("schedule_seconds", schedule),
    )
    changes.update({key: value for key, value in optional if value is not None})
    if not changes and alert_webhook is None:
        fail("nothing to change: give at least one option", ExitCode.USAGE)
    settings = get_settings()
    with session() as opened:
        row = require_connection(opened, org, connection)
        if changes:
            connections.update_connection(opened, settings, row, changes, check=check)
        if alert_webhook is not None:
            _set_alerts(settings, row, alert_webhook, alert_secret)
            changes["alert_webhook"] = True
        data = connections.describe(row)
    if as_json:
        print_json(data)
        return
    say(f"Connection [bold]{data['name']}[/] updated: {', '.join(sorted(changes))}.")


def _new_credentials(keys: list[str]) -> dict[str, str]:
    """Each credential's new value, asked at a hidden prompt; an empty one is refused."""
    secrets = {}
    for key in keys:
        value = _secret(None, f"New value of {key}")
        if not value:
            fail(f"no value given for {key}", ExitCode.INVALID)
        secrets[key] = value
    return secrets


def _setting_changes(
    setting: list[str] | None,
    ca_bundle: str | None,
    field_map: list[str] | None,
    direction: list[str] | None,
) -> dict[str, Any]:
    """The settings, field map and directions to change."""
    changes: dict[str, Any] = {}
    options = _setting_values(setting)
    if ca_bundle:
        options["ca_bundle"] = ca_bundle  # stored absolute (sync.connections)
    if options:
        changes["settings"] = options
    if field_map:
        changes["field_map"] = _field_map(field_map)
    if direction:
        changes["directions"] = _pairs(direction, "--direction")
    return changes


__all__ = ["app", "connection_option", "require_connection", "settings_and_engine"]
