"""Connections: an organisation's link to one CRM account, and the connector built for it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import (
    CONTACTS_SETTING,
    CUSTOMER_FIELDS,
    ApiUsage,
    ConnectionConfig,
    Connector,
    FieldResolver,
    RateGate,
)
from connectors.errors import ConfigError
from connectors.setup import check_config
from sync import alerts
from sync.alerts import describe_target
from sync.crypto import decrypt_credentials, encrypt_credentials
from sync.errors import ConnectionSetupError as ConnectionSetupError
from sync.match import MATCH_MODES
from sync.settings import Settings
from sync.store import repository as customers_repository
from sync.store import sync_repository as repo
from sync.store.models import ConnectionRow, new_id, utcnow

log = logging.getLogger(__name__)

DIRECTIONS = ("both", "crm_to_billing", "billing_to_crm", "none")
CREATE_POLICIES = ("create", "ignore")


@dataclass
class ConnectionSpec:
    """What an operator gives to add a connection (or change one with ``set``)."""

    name: str
    kind: str
    credentials: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    field_map: dict[str, str | None] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    match_mode: str = "exact"
    create_policy: str = "create"
    #: create CRM records for billing customers that have none. None (not said): yes for
    #: an organisation without customers yet; no when it has some, so that a connection
    #: added to a live billing store never fills the CRM on its first sync unless asked
    push_creates: bool | None = None
    schedule_seconds: int = 900


def _validate(spec: ConnectionSpec) -> None:
    connector = registry.connector_class(spec.kind)  # an unknown CRM is a clear ConfigError
    bundle = spec.settings.get("ca_bundle")
    if isinstance(bundle, str) and bundle.strip():
        # stored absolute: a worker started in another folder reads the same file
        spec.settings["ca_bundle"] = str(Path(bundle.strip()).expanduser().resolve())
    try:
        # the connector's own models check its settings and credentials (connectors.setup)
        spec.settings, spec.credentials = check_config(connector, spec.settings, spec.credentials)
    except ConfigError as error:
        raise ConnectionSetupError(str(error)) from None
    if spec.match_mode not in MATCH_MODES:
        raise ConnectionSetupError(f"match mode must be one of {', '.join(MATCH_MODES)}")
    if spec.create_policy not in CREATE_POLICIES:
        raise ConnectionSetupError(f"create policy must be one of {', '.join(CREATE_POLICIES)}")
    bad = {f: d for f, d in spec.directions.items() if d not in DIRECTIONS}
    if bad:
        raise ConnectionSetupError(
            f"unknown direction(s) {bad}; use one of {', '.join(DIRECTIONS)}"
        )
    if spec.schedule_seconds < 10:
        raise ConnectionSetupError("schedule must be at least 10 seconds")
    if not isinstance(spec.settings.get(CONTACTS_SETTING, True), bool):
        raise ConnectionSetupError(
            f"setting {CONTACTS_SETTING} must be true or false, "
            f"not {spec.settings[CONTACTS_SETTING]!r}"
        )


def config_for(settings: Settings, row: ConnectionRow) -> ConnectionConfig:
    """The connector's configuration: the operator's field map, with the default fields the
    CRM lacks (found when the connection was checked) left out."""
    absent: dict[str, str | None] = {f: None for f in row.unmapped_fields or {}}
    return ConnectionConfig(
        connection_id=row.id,
        organisation_id=row.organisation_id,
        credentials=decrypt_credentials(settings, row.credentials),
        settings=dict(row.settings),
        field_map={**absent, **row.field_map},
    )


def open_connector(
    settings: Settings, row: ConnectionRow, gate: RateGate | None = None
) -> Connector:
    """The connector for a stored connection, with its credentials decrypted."""
    return registry.create(row.kind, config_for(settings, row), gate=gate)


def add_connection(
    session: Session,
    settings: Settings,
    organisation_id: str,
    spec: ConnectionSpec,
    *,
    check: bool = True,
) -> ConnectionRow:
    """Store a new connection with encrypted credentials. With ``check`` the connector
    authenticates and validates the field map now, so a bad map fails at set-up.
    ``spec.push_creates`` None becomes False when the organisation already has customers
    (see :func:`first_sync_creates`)."""
    _validate(spec)
    if repo.find_connection(session, organisation_id, spec.name) is not None:
        raise ConnectionSetupError(f"a connection named {spec.name!r} already exists")
    if spec.push_creates is None:
        spec.push_creates = customers_repository.count_customers(session, organisation_id) == 0
    row = ConnectionRow(
        id=new_id(),
        organisation_id=organisation_id,
        name=spec.name,
        kind=spec.kind,
        settings=spec.settings,
        credentials=encrypt_credentials(settings, spec.credentials),
        field_map=spec.field_map,
        directions=spec.directions,
        match_mode=spec.match_mode,
        create_policy=spec.create_policy,
        push_creates=spec.push_creates,
        schedule_seconds=spec.schedule_seconds,
        state="active",
    )
    _check_connector(settings, row, spec, check)
    session.add(row)
    session.flush()
    return row


def _check_connector(
    settings: Settings, row: ConnectionRow, spec: ConnectionSpec, check: bool
) -> None:
    """Directions must name mapped fields; with ``check`` the CRM is asked too (auth, and
    every mapped field exists), so a bad map fails at set-up, not in the night. With
    ``check``, the default fields the CRM lacks (its describe / properties) are left out of
    the map and kept, with why, in ``row.unmapped_fields``; a field mapped explicitly or a
    required one that does not exist is an error saying how to fix it."""
    if check:
        row.unmapped_fields = {}
        connector = open_connector(settings, row)
        if isinstance(connector, FieldResolver):
            row.unmapped_fields = connector.unavailable_fields()
    connector = open_connector(settings, row)
    unknown = set(spec.directions) - set(connector.mapped_fields)
    if unknown:
        raise ConnectionSetupError(
            f"directions name fields this connection does not map: {sorted(unknown)} "
            f"(mapped: {', '.join(connector.mapped_fields)})"
        )
    if check:
        connector.check()


def update_connection(
    session: Session,
    settings: Settings,
    row: ConnectionRow,
    changes: Mapping[str, Any],
    *,
    check: bool = True,
) -> ConnectionRow:
    """Change a connection's options (``connections set``); credentials are merged in."""
    spec = ConnectionSpec(
        name=changes.get("name", row.name),
        kind=row.kind,
        credentials={
            **decrypt_credentials(settings, row.credentials),
            **changes.get("credentials", {}),
        },
        settings={**row.settings, **changes.get("settings", {})},
        field_map={**row.field_map, **changes.get("field_map", {})},
        directions={**row.directions, **changes.get("directions", {})},
        match_mode=changes.get("match_mode", row.match_mode),
        create_policy=changes.get("create_policy", row.create_policy),
        push_creates=changes.get("push_creates", row.push_creates),
        schedule_seconds=changes.get("schedule_seconds", row.schedule_seconds),
    )
    _validate(spec)
    candidate = ConnectionRow(
        id=row.id,
        organisation_id=row.organisation_id,
        kind=row.kind,
        settings=spec.settings,
        credentials=encrypt_credentials(settings, spec.credentials),
        field_map=spec.field_map,
    )
    candidate.directions = spec.directions
    candidate.unmapped_fields = dict(row.unmapped_fields or {})
    _check_connector(settings, candidate, spec, check)
    row.name = spec.name
    row.settings = spec.settings
    row.credentials = candidate.credentials
    row.field_map = spec.field_map
    row.directions = spec.directions
    row.match_mode = spec.match_mode
    row.create_policy = spec.create_policy
    row.push_creates = bool(spec.push_creates)
    if row.schedule_seconds != spec.schedule_seconds:
        # the next scheduled sync follows the new interval, from the last one
        row.schedule_seconds = spec.schedule_seconds
        _rearm(row)
    row.unmapped_fields = candidate.unmapped_fields
    session.flush()
    return row


def first_sync_creates(session: Session, row: ConnectionRow) -> int:
    """How many CRM records a first sync of this new connection could create: the billing
    customers it would push as creates (those the CRM does not hold already, by external ID,
    are created), or 0 when it does not push creates."""
    if not row.push_creates:
        return 0
    return customers_repository.count_customers(session, row.organisation_id)


def existing_customers(session: Session, organisation_id: str) -> int:
    """The organisation's billing customers."""
    return customers_repository.count_customers(session, organisation_id)


def _rearm(row: ConnectionRow) -> None:
    if row.limit_until is not None and limit_pause(row) is not None:
        return  # paused by a CRM limit: due again when the allowance returns
    if row.last_sync_at is None:
        row.next_sync_at = utcnow()
        return
    row.next_sync_at = row.last_sync_at + timedelta(seconds=row.schedule_seconds)


def set_state(row: ConnectionRow, state: str) -> None:
    """Pause or resume a connection; a paused one is skipped by the scheduler. An
    operator's resume also ends a pause by the CRM's limit (they may know the allowance is
    back, e.g. raised by the vendor)."""
    if state not in ("active", "paused"):
        raise ConnectionSetupError("state must be active or paused")
    row.state = state
    if state == "active":
        row.next_sync_at = utcnow()
        row.limit_until = None
        row.limit_reason = None


# --- paused by the CRM's limit ---------------------------------------------------------------

#: the state shown for a connection paused by its CRM's daily API allowance
PAUSED_BY_LIMIT = "paused_by_limit"


def limit_pause(row: ConnectionRow, now: datetime | None = None) -> tuple[datetime, str] | None:
    """(until, reason) while the connection is paused by its CRM's daily limit, else None."""
    if row.limit_until is None:
        return None
    until = row.limit_until
    if until <= (now or utcnow()):
        return None
    return until, row.limit_reason or "the CRM's daily API allowance is spent"


def effective_state(row: ConnectionRow, now: datetime | None = None) -> str:
    """``paused`` (by an operator), ``paused_by_limit`` (until the CRM's allowance returns)
    or ``active``."""
    if row.state == "paused":
        return "paused"
    return PAUSED_BY_LIMIT if limit_pause(row, now) is not None else row.state


def pause_for_limit(row: ConnectionRow, until: datetime, reason: str) -> None:
    """The CRM's daily allowance is spent: pause the connection until ``until``. The
    scheduler skips it until then and resumes it by itself (:func:`resume_expired`); its
    next scheduled sync is at ``until``. Alerted once (``sync.alerts``)."""
    row.limit_until = until
    row.limit_reason = reason[:500]
    row.next_sync_at = until
    alerts.note_paused_by_limit(row, until, reason)
    log.warning(
        "connection paused by the CRM's daily limit",
        extra={
            "organisation_id": row.organisation_id,
            "connection_id": row.id,
            "crm": row.kind,
            "paused_until": until.isoformat(),
            "reason": row.limit_reason,
        },
    )


def limit_error(until: datetime, reason: str) -> str:
    """A run's error when the CRM's daily limit paused its connection."""
    return f"paused by the CRM's daily limit until {until.isoformat()}: {reason}"


def resume_expired(session: Session, now: datetime | None = None) -> Sequence[ConnectionRow]:
    """End every pause by a CRM limit whose ``until`` has passed (beat's dispatcher, each
    tick): the connection is active again and due at once. The resumed connections."""
    now = now or utcnow()
    resumed = repo.limit_pauses_ended(session, now)
    for row in resumed:
        row.limit_until = None
        row.limit_reason = None
        if row.next_sync_at is None or row.next_sync_at > now:
            row.next_sync_at = now
        log.info(
            "connection resumed: the CRM's daily limit has returned",
            extra={"organisation_id": row.organisation_id, "connection_id": row.id},
        )
    return resumed


def note_api_usage(row: ConnectionRow, usage: ApiUsage | None) -> None:
    """Keep the CRM's allowance as its last answer reported it (the console shows it)."""
    if usage is None:
        return
    row.api_usage = {
        "used": usage.used,
        "limit": usage.limit,
        "window": usage.window,
        "at": utcnow().isoformat(),
    }


def schedule_next(row: ConnectionRow) -> None:
    row.last_sync_at = utcnow()
    row.next_sync_at = row.last_sync_at + timedelta(seconds=row.schedule_seconds)


def unmapped(settings: Settings, row: ConnectionRow) -> dict[str, str]:
    """Every customer field this connection does not map -> why: the CRM lacks it (its
    describe said so), the operator unmapped it, or the connector has no default for it."""
    mapped = set(open_connector(settings, row).mapped_fields)
    absent = row.unmapped_fields or {}
    out: dict[str, str] = {}
    for name in CUSTOMER_FIELDS:
        if name in mapped:
            continue
        if name in absent:
            out[name] = f"the CRM lacks it: {absent[name]}"
        elif name in (row.field_map or {}):
            out[name] = f"unmapped by the operator (--map {name}=)"
        else:
            out[name] = (
                f"{row.kind} has no default field for it: map one with --map {name}=CRM_FIELD"
            )
    return out


def describe(row: ConnectionRow) -> dict[str, Any]:
    """A connection as the operator may see it: never the credentials."""
    pause = limit_pause(row)
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "state": effective_state(row),
        "paused_by_limit": (
            {"until": pause[0].isoformat(), "reason": pause[1]} if pause is not None else None
        ),
        "api_usage": dict(row.api_usage or {}) or None,
        "settings": row.settings,
        "field_map": row.field_map,
        "fields_the_crm_lacks": dict(row.unmapped_fields or {}),
        "directions": row.directions,
        "match_mode": row.match_mode,
        "create_policy": row.create_policy,
        "push_creates": row.push_creates,
        "schedule_seconds": row.schedule_seconds,
        "last_sync_at": row.last_sync_at.isoformat() if row.last_sync_at else None,
        "next_sync_at": row.next_sync_at.isoformat() if row.next_sync_at else None,
        "alert_webhook": describe_target(row),
    }
