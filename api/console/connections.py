"""The Connections pages: health at a glance, one connection, its actions, its plan.

Actions (operators): pause, resume, sync now (queued for a worker, as ``crmsync sync``
does). The plan (anyone signed in) runs the engine in plan mode: it reads the CRM and
writes nothing. Admins also change a connection's options. Settings are shown as the
connection stores them, whatever its CRM, and its credentials never.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.console.base import (
    AdminDep,
    EngineDep,
    MeDep,
    OperatorDep,
    back_to,
    console_session,
    not_found,
    reading,
    redirect,
    render,
)
from api.deps import get_settings
from connectors import registry
from connectors.base import webhook_setup_for
from connectors.errors import ConnectorError
from connectors.setup import OptionField, option_fields
from sync import connections, health, operator_actions
from sync.connections import (
    CREATE_POLICIES,
    DIRECTIONS,
    ConnectionSetupError,
    ConnectionSpec,
    open_connector,
)
from sync.crypto import SecretKeyMissing
from sync.engine import sync_connection
from sync.errors import ConnectionPaused
from sync.match import MATCH_MODES
from sync.plan import Plan
from sync.store import review_repository, sync_repository
from tasks import enqueue
from tasks.work import connection_gate

router = APIRouter()

#: the plan's sections, by the side they change
PLAN_SECTIONS: tuple[tuple[str, str], ...] = (
    ("billing_creates", "Billing: customers to create"),
    ("billing_updates", "Billing: fields to update"),
    ("links", "Links to make (CRM record ↔ existing customer)"),
    ("crm_creates", "CRM: records to create"),
    ("crm_updates", "CRM: fields to update"),
    ("conflicts", "Conflicts to open"),
    ("removals", "CRM deletes, merges and restores"),
    ("ignored", "CRM records ignored (create policy)"),
    ("failures", "Records that would fail"),
)
#: rows shown per plan section (the rest are counted)
PLAN_ROWS = 200


@router.get("/")
def home(me: MeDep) -> Response:
    return redirect("/console/connections")


@router.get("/connections")
def connections_page(request: Request, me: MeDep, engine: EngineDep) -> Response:
    with reading(engine) as db:
        found = health.connection_health(db, me.organisation_id)
    # what each installed connector takes, from its own models (connectors.setup); a
    # plug-in that cannot be loaded is named with why, and the others still work
    installed = registry.installed()
    fields = {c.key: option_fields(c.connector) for c in installed if c.connector is not None}
    broken = {c.key: c.error for c in installed if c.connector is None}
    return render(
        request,
        "connections.html",
        {"me": me, "connections": found, "kind_fields": fields, "broken": broken},
    )


def _typed(field: OptionField, text: str) -> Any:
    """A form field's text as its setting's type (``30`` a number, ``true`` a boolean);
    text that is not one is passed on as typed, for the model to refuse in its words."""
    try:
        if field.kind == "int":
            return int(text)
        if field.kind == "float":
            return float(text)
    except ValueError:
        return text
    if field.kind == "bool" and text in ("true", "false"):
        return text == "true"
    return text


def _connector_form(request: Request, kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings and credentials given in a connector's form fields (``setting.NAME``,
    ``credential.NAME``, see ``_connector_fields.html``); blank fields are not given."""
    form = getattr(request.state, "form", None) or {}
    given_settings: dict[str, Any] = {}
    given_credentials: dict[str, str] = {}
    for field in option_fields(registry.connector_class(kind)):
        prefix = "credential." if field.credential else "setting."
        raw = form.get(prefix + field.name)
        if not isinstance(raw, str) or not raw.strip():
            continue
        if field.credential:
            given_credentials[field.name] = raw if field.kind == "secret" else raw.strip()
        else:
            given_settings[field.name] = _typed(field, raw.strip())
    return given_settings, given_credentials


def _pairs(text: str, what: str, *, json_values: bool) -> dict[str, Any]:
    """``KEY=VALUE`` lines (blank lines skipped); values parsed as JSON when asked and
    possible, so ``max_attempts=8`` is a number and ``host=https://...`` stays text."""
    pairs: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConnectionSetupError(f"{what}, line {number}: not KEY=VALUE")
        value = value.strip()
        if json_values:
            try:
                pairs[key.strip()] = json.loads(value)
                continue
            except ValueError:
                pass
        pairs[key.strip()] = value
    return pairs


@router.post("/connections")
def add_connection(
    request: Request,
    me: AdminDep,
    engine: EngineDep,
    kind: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(min_length=1, max_length=255)],
    credentials: Annotated[str, Form(max_length=20_000)] = "",
    options: Annotated[str, Form(max_length=20_000)] = "",
    check: Annotated[bool, Form()] = False,
) -> Response:
    """Add a connection of any installed CRM (admins): its settings and credentials from
    the connector's form fields (made from its models, as ``crmsync connections add``
    makes its options), or as ``KEY=VALUE`` lines (``credentials``, ``options``) for a
    script. Checked with the CRM first unless unticked; on refusal nothing is stored and
    nothing typed is echoed."""
    session = console_session(request)
    settings = get_settings(request)
    try:
        given_settings, given_credentials = _connector_form(request, kind)
        spec = ConnectionSpec(
            name=name.strip(),
            kind=kind,
            credentials={
                **{
                    k: str(v)
                    for k, v in _pairs(credentials, "credentials", json_values=False).items()
                    if str(v)
                },
                **given_credentials,
            },
            settings={**_pairs(options, "settings", json_values=True), **given_settings},
        )
        with reading(engine) as db:
            row = operator_actions.add_connection(
                db, settings, me.organisation_id, spec, actor=me.actor, check=check
            )
            connection_id, added = row.id, row.name
    except (ConnectionSetupError, ConnectorError, SecretKeyMissing) as error:
        session.say(f"Connection not added: {type(error).__name__}: {error}", "error")
        return redirect("/console/connections")
    session.say(f"Added {kind} connection {added}.")
    return redirect(f"/console/connections/{connection_id}")


def _one(engine: Any, me: Any, connection_id: str) -> health.ConnectionHealth:
    with reading(engine) as db:
        found = health.connection_health(db, me.organisation_id, connection_id=connection_id)
    if not found:
        raise not_found("connection")
    return found[0]


@router.get("/connections/{connection_id}")
def connection_page(request: Request, connection_id: str, me: MeDep, engine: EngineDep) -> Response:
    one = _one(engine, me, connection_id)
    settings = get_settings(request)
    with reading(engine) as db:
        row = operator_actions.require_connection(db, me.organisation_id, connection_id)
        runs = [
            health.summarise_run(r)
            for r in sync_repository.list_runs(db, me.organisation_id, connection_id, limit=10)
        ]
        trail = list(review_repository.audit_trail(db, me.organisation_id, connection_id, 20))
        options = {
            "match_mode": row.match_mode,
            "create_policy": row.create_policy,
            "push_creates": row.push_creates,
            "schedule_seconds": row.schedule_seconds,
            "field_map": dict(row.field_map or {}),
            "directions": dict(row.directions or {}),
        }
        webhook_url = f"{settings.public_base_url.rstrip('/')}/webhooks/{row.kind}/{row.id}"
        webhook_setup: str | None = None
        try:
            connector = registry.connector_class(row.kind)
            editable_fields = option_fields(connector)
            if connector.capabilities.webhooks:
                webhook_setup = webhook_setup_for(connector, webhook_url)
        except ConnectorError:  # a plug-in no longer installed: nothing to edit with
            editable_fields = []
        try:
            fields: list[str] = list(open_connector(settings, row).mapped_fields)
            unmapped = connections.unmapped(settings, row)
        except (ConnectorError, SecretKeyMissing):
            fields = sorted(row.directions or {})
            unmapped = dict(row.unmapped_fields or {})
    return render(
        request,
        "connection.html",
        {
            "me": me,
            "c": one,
            "runs": runs,
            "trail": trail,
            "options": options,
            "fields": fields,
            "unmapped": unmapped,
            "match_modes": MATCH_MODES,
            "create_policies": CREATE_POLICIES,
            "directions": DIRECTIONS,
            "webhook_url": webhook_url,
            "webhook_setup": webhook_setup,
            "editable_fields": editable_fields,
            "connector_settings": dict(row.settings or {}),
        },
    )


def _state(request: Request, engine: Any, me: Any, connection_id: str, state: str) -> Response:
    session = console_session(request)
    with reading(engine) as db:
        try:
            row = operator_actions.set_state(
                db, me.organisation_id, connection_id, state, actor=me.actor
            )
        except LookupError:
            raise not_found("connection") from None
        name = row.name
    session.say(f"{name} is {'paused' if state == 'paused' else 'active again'}.")
    return back_to(request, f"/console/connections/{connection_id}")


@router.post("/connections/{connection_id}/pause")
def pause(request: Request, connection_id: str, me: OperatorDep, engine: EngineDep) -> Response:
    return _state(request, engine, me, connection_id, "paused")


@router.post("/connections/{connection_id}/resume")
def resume(request: Request, connection_id: str, me: OperatorDep, engine: EngineDep) -> Response:
    return _state(request, engine, me, connection_id, "active")


@router.post("/connections/{connection_id}/sync")
def sync_now(
    request: Request,
    connection_id: str,
    me: OperatorDep,
    engine: EngineDep,
    full: Annotated[bool, Form()] = False,
) -> Response:
    """Queue a sync for a worker (as ``crmsync sync`` does), after the audit commits."""
    session = console_session(request)
    settings = get_settings(request)
    try:
        with reading(engine) as db:
            row = operator_actions.note_sync_requested(
                db, me.organisation_id, connection_id, actor=me.actor, full=full
            )
            name = row.name
    except LookupError:
        raise not_found("connection") from None
    except ConnectionPaused as error:
        session.say(str(error), "error")
        return back_to(request, f"/console/connections/{connection_id}")
    try:
        enqueue.enqueue_sync(settings, connection_id, trigger="operator", full=full)
    except Exception as error:  # the broker is down: say so, the schedule still runs
        session.say(f"Could not queue the sync of {name}: {type(error).__name__}", "error")
        return back_to(request, f"/console/connections/{connection_id}")
    session.say(f"A {'full ' if full else ''}sync of {name} is queued for a worker.")
    return back_to(request, f"/console/connections/{connection_id}")


@router.get("/connections/{connection_id}/plan")
def plan_page(request: Request, connection_id: str, me: MeDep, engine: EngineDep) -> Response:
    """What a sync would do now on each side: the engine in plan mode (reads the CRM,
    writes nothing)."""
    one = _one(engine, me, connection_id)
    settings = get_settings(request)
    error: str | None = None
    plan = Plan()
    counters: dict[str, int] = {}
    try:
        result = sync_connection(
            engine,
            settings,
            connection_id,
            trigger="operator",
            plan=True,
            gate=connection_gate(settings, engine, connection_id),
        )
        plan, counters, error = result.plan or Plan(), result.counters, result.error
    except (ConnectorError, SecretKeyMissing, ConnectionSetupError) as failure:
        error = f"{type(failure).__name__}: {failure}"
    sections = []
    data = plan.as_dict()
    for key, title in PLAN_SECTIONS:
        rows = data.get(key) or []
        if not rows:
            continue
        columns = list(dict.fromkeys(k for row in rows for k in row))
        sections.append(
            {
                "key": key,
                "title": title,
                "columns": columns,
                "rows": rows[:PLAN_ROWS],
                "more": max(0, len(rows) - PLAN_ROWS),
                "count": len(rows),
            }
        )
    return render(
        request,
        "plan.html",
        {
            "me": me,
            "c": one,
            "sections": sections,
            "counters": {k: v for k, v in counters.items() if v},
            "error": error,
        },
    )


@router.post("/connections/{connection_id}/options")
def change_options(
    request: Request,
    connection_id: str,
    me: AdminDep,
    engine: EngineDep,
    schedule_seconds: Annotated[int, Form(ge=10, le=7 * 86400)],
    match_mode: Annotated[str, Form()],
    create_policy: Annotated[str, Form()],
    push_creates: Annotated[bool, Form()] = False,
) -> Response:
    """Change a connection's options (admins). Directions come as ``direction.FIELD``."""
    session = console_session(request)
    settings = get_settings(request)
    form = getattr(request.state, "form", None) or {}
    directions = {
        key.removeprefix("direction."): str(value)
        for key, value in form.items()
        if key.startswith("direction.") and value
    }
    changes: dict[str, Any] = {
        "schedule_seconds": schedule_seconds,
        "match_mode": match_mode,
        "create_policy": create_policy,
        "push_creates": push_creates,
    }
    if directions:
        changes["directions"] = directions
    try:
        with reading(engine) as db:
            row = operator_actions.change_connection(
                db, settings, me.organisation_id, connection_id, changes, actor=me.actor,
                check=False,
            )  # fmt: skip
            name = row.name
    except LookupError:
        raise not_found("connection") from None
    except (ConnectionSetupError, ConnectorError, SecretKeyMissing) as error:
        session.say(f"Options not changed: {error}", "error")
        return redirect(f"/console/connections/{connection_id}")
    session.say(f"{name}: options saved.")
    return redirect(f"/console/connections/{connection_id}")


@router.post("/connections/{connection_id}/connector")
def change_connector(
    request: Request,
    connection_id: str,
    me: AdminDep,
    engine: EngineDep,
    check: Annotated[bool, Form()] = False,
) -> Response:
    """Change a connection's connector settings and credentials (admins), from the
    connector's form fields: a blank field keeps what is stored, a credential typed
    replaces it (never shown). Checked with the CRM first unless unticked, as ``crmsync
    connections set`` is; on refusal nothing changes and nothing typed is echoed."""
    session = console_session(request)
    settings = get_settings(request)
    try:
        with reading(engine) as db:
            kind = operator_actions.require_connection(db, me.organisation_id, connection_id).kind
        given_settings, given_credentials = _connector_form(request, kind)
        changes: dict[str, Any] = {}
        if given_settings:
            changes["settings"] = given_settings
        if given_credentials:
            changes["credentials"] = given_credentials
        if not changes:
            session.say("Nothing to change: every field was left blank.", "error")
            return redirect(f"/console/connections/{connection_id}")
        with reading(engine) as db:
            row = operator_actions.change_connection(
                db, settings, me.organisation_id, connection_id, changes, actor=me.actor,
                check=check,
            )  # fmt: skip
            name = row.name
    except LookupError:
        raise not_found("connection") from None
    except (ConnectionSetupError, ConnectorError, SecretKeyMissing) as error:
        session.say(f"Connector settings not changed: {type(error).__name__}: {error}", "error")
        return redirect(f"/console/connections/{connection_id}")
    changed = sorted({*given_settings, *given_credentials})
    session.say(f"{name}: {', '.join(changed)} changed.")
    return redirect(f"/console/connections/{connection_id}")
