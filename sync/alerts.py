"""Alerts: a connection tells its operators, on a webhook of their choosing, when to look.

A connection with an alert webhook (``crmsync connections add|set --alert-webhook URL``)
gets a POST when

- its runs fail ``CRMSYNC_ALERT_FAILED_RUNS`` times in a row (once per streak; the link is the
  last failed run's console page, which shows its error);
- it is paused because the CRM's daily API allowance is spent (once per pause; the link is
  the connection's page);
- conflicts open: a digest of the new ones, at most one per
  ``CRMSYNC_ALERT_DIGEST_SECONDS`` (the link is the connection's conflict queue).

The body is Slack-compatible JSON (``text``, with the link in Slack's ``<url|label>`` form,
plus a ``crmsync`` object with the same facts for machines). Each request is signed:

    X-Crmsync-Timestamp: 1733100000                        (Unix seconds)
    X-Crmsync-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>

To verify: recompute the HMAC over the timestamp header, a dot and the raw body bytes with
the connection's alert secret, compare in constant time, and refuse a timestamp more than
five minutes old (:func:`verify`). The URL and the secret are stored encrypted
(``CRMSYNC_SECRET_KEY``) and never logged: a Slack webhook URL is itself a credential.

:func:`collect` (beat's dispatcher, every tick) decides which alerts are due and records them
as sent in the same transaction; a task delivers each (:func:`deliver`), retried with
back-off when the receiver fails. Nothing here ever fails or delays a sync.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sync.crypto import decrypt_credentials, encrypt_credentials
from sync.errors import AlertDeliveryFailed as AlertDeliveryFailed
from sync.errors import AlertSetupError as AlertSetupError
from sync.settings import Settings
from sync.store import ops_repository
from sync.store.db import transaction
from sync.store.models import ConnectionRow, utcnow

log = logging.getLogger("crmsync.alerts")

SIGNATURE_HEADER = "X-Crmsync-Signature"
TIMESTAMP_HEADER = "X-Crmsync-Timestamp"
#: a signed request older than this is refused by :func:`verify`
TOLERANCE_SECONDS = 300
#: the receiver gets this long to answer
TIMEOUT_SECONDS = 10.0

RUNS_FAILING = "runs_failing"
PAUSED_BY_LIMIT = "paused_by_limit"
CONFLICTS_OPENED = "conflicts_opened"


@dataclass(frozen=True)
class AlertTarget:
    url: str
    secret: str


@dataclass(frozen=True)
class Alert:
    """One alert to send: the connection and the JSON body."""

    connection_id: str
    kind: str
    body: dict[str, Any]


# --- setting it up -------------------------------------------------------------------------


def set_alert_webhook(
    settings: Settings, row: ConnectionRow, url: str | None, secret: str | None
) -> None:
    """Point the connection's alerts at ``url``, signed with ``secret`` (both stored
    encrypted); ``url`` None or empty turns alerts off. Conflicts already open are not
    alerted: the first digest starts from now."""
    if not url:
        row.alert_webhook = None
        row.alert_state = {}
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AlertSetupError("the alert webhook must be an http:// or https:// URL")
    if not secret or len(secret) < 16:
        raise AlertSetupError(
            "the alert webhook needs a signing secret of at least 16 characters "
            "(e.g. `openssl rand -hex 32`)"
        )
    row.alert_webhook = encrypt_credentials(settings, {"url": url, "secret": secret})
    row.alert_state = {
        "target": f"{parts.scheme}://{parts.hostname}",
        "digest_through": utcnow().isoformat(),
    }


def alert_target(settings: Settings, row: ConnectionRow) -> AlertTarget | None:
    """The connection's decrypted alert webhook (None: no alerts)."""
    if not row.alert_webhook:
        return None
    data = decrypt_credentials(settings, row.alert_webhook)
    return AlertTarget(data["url"], data["secret"])


def describe_target(row: ConnectionRow) -> str | None:
    """Where alerts go, for operators: scheme and host only (the path can be a secret)."""
    if not row.alert_webhook:
        return None
    return f"{(row.alert_state or {}).get('target', 'set')}/… (signed)"


# --- deciding ------------------------------------------------------------------------------


def console_url(settings: Settings, path: str) -> str:
    """The console page that explains an alert."""
    return f"{settings.public_base_url.rstrip('/')}/console/{path}"


def collect(session: Session, settings: Settings) -> list[Alert]:
    """The alerts now due for every connection with an alert webhook, recorded as sent
    (the caller commits, then hands them to :func:`deliver`)."""
    due: list[Alert] = []
    query = select(ConnectionRow).where(ConnectionRow.alert_webhook.is_not(None))
    for row in session.scalars(query):
        state = dict(row.alert_state or {})
        for rule in (_runs_failing, _paused_by_limit, _conflicts_digest):
            alert = rule(session, settings, row, state)
            if alert is not None:
                due.append(alert)
        if state != (row.alert_state or {}):
            row.alert_state = state
    return due


def _alert(
    settings: Settings, row: ConnectionRow, kind: str, text: str, link: str, **facts: Any
) -> Alert:
    url = console_url(settings, link)
    headline = f"crmsync: connection *{row.name}* ({row.kind}): {text}"
    return Alert(
        row.id,
        kind,
        {
            "text": f"{headline} <{url}|Open in the console>",
            "crmsync": {
                "alert": kind,
                "organisation_id": row.organisation_id,
                "connection_id": row.id,
                "connection": row.name,
                "crm": row.kind,
                "url": url,
                **facts,
            },
        },
    )


def _runs_failing(
    session: Session, settings: Settings, row: ConnectionRow, state: dict[str, Any]
) -> Alert | None:
    limit = max(1, settings.alert_failed_runs)
    runs = ops_repository.recent_runs(session, row.id, limit)
    if runs and runs[0].status == "succeeded":
        state.pop("failing_alerted", None)  # the streak is over: the next one alerts again
        return None
    if len(runs) < limit or any(r.status != "failed" for r in runs) or state.get("failing_alerted"):
        return None
    last = runs[0]
    state["failing_alerted"] = last.id
    return _alert(
        settings,
        row,
        RUNS_FAILING,
        f"its last {limit} runs failed. Last error: {last.error or 'unknown'}",
        f"runs/{last.id}",
        failed_runs=limit,
        run_id=last.id,
        error=last.error,
    )


def _paused_by_limit(
    session: Session, settings: Settings, row: ConnectionRow, state: dict[str, Any]
) -> Alert | None:
    until = _moment(state.get("paused_until"))
    if until is None or until <= utcnow():
        for key in ("paused_until", "paused_reason", "paused_alerted"):
            state.pop(key, None)
        return None
    if state.get("paused_alerted") == state["paused_until"]:
        return None
    state["paused_alerted"] = state["paused_until"]
    reason = state.get("paused_reason") or "the CRM's daily API allowance is spent"
    return _alert(
        settings,
        row,
        PAUSED_BY_LIMIT,
        f"paused until {until.isoformat(timespec='minutes')} ({reason}); it resumes by itself.",
        f"connections/{row.id}",
        paused_until=until.isoformat(),
        reason=reason,
    )


def note_paused_by_limit(row: ConnectionRow, until: datetime, reason: str) -> None:
    """Record that ``row`` is paused until ``until`` because its CRM's daily allowance is
    spent (``reason``: the CRM's words). Whoever pauses a connection for a CRM limit calls
    this in the same transaction; the next :func:`collect` alerts once for this pause."""
    state = dict(row.alert_state or {})
    state["paused_until"] = until.isoformat()
    state["paused_reason"] = reason[:300]
    row.alert_state = state


def _conflicts_digest(
    session: Session, settings: Settings, row: ConnectionRow, state: dict[str, Any]
) -> Alert | None:
    now = utcnow()
    last = _moment(state.get("last_digest_at"))
    if last is not None and (now - last).total_seconds() < settings.alert_digest_seconds:
        return None
    since = _moment(state.get("digest_through"))
    opened = ops_repository.conflicts_opened_since(session, row.id, since)
    if not opened:
        return None
    fields = Counter(c.field for c in opened)
    state["digest_through"] = max(c.created_at for c in opened).isoformat()
    state["last_digest_at"] = now.isoformat()
    summary = ", ".join(f"{field} ({count})" for field, count in fields.most_common(5))
    return _alert(
        settings,
        row,
        CONFLICTS_OPENED,
        f"{len(opened)} new conflict{'s' if len(opened) != 1 else ''} to resolve: {summary}.",
        f"conflicts?connection={row.id}",
        conflicts=len(opened),
        fields=dict(fields),
    )


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# --- sending -------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None
) -> bool:
    """What a receiver does: the signature matches and the timestamp is fresh."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= TOLERANCE_SECONDS and hmac.compare_digest(
        sign(secret, timestamp, body), signature
    )


def deliver(engine: Engine, settings: Settings, alert: Alert) -> None:
    """POST one alert, signed; raise :class:`AlertDeliveryFailed` when the receiver does not
    answer 2xx (the caller retries). A connection whose webhook was removed since is skipped."""
    with transaction(engine) as session:
        row = session.get(ConnectionRow, alert.connection_id)
        target = alert_target(settings, row) if row is not None else None
    if target is None:
        log.info("alert dropped: the connection has no alert webhook now", extra=_ids(alert))
        return
    body = json.dumps(alert.body, separators=(",", ":")).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(target.secret, stamp, body),
        "User-Agent": "crmsync-alerts",
    }
    try:
        answer = httpx.post(target.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        # httpx's messages can carry the URL: name only the kind of failure
        log.warning("alert not delivered", extra={**_ids(alert), "error": type(error).__name__})
        raise AlertDeliveryFailed(
            f"the alert receiver was not reachable ({type(error).__name__})"
        ) from None
    if not 200 <= answer.status_code < 300:
        log.warning("alert not delivered", extra={**_ids(alert), "status": answer.status_code})
        raise AlertDeliveryFailed(f"the alert receiver answered {answer.status_code}")
    log.info("alert delivered", extra=_ids(alert))


def _ids(alert: Alert) -> dict[str, Any]:
    facts = alert.body.get("crmsync", {})
    return {
        "alert": alert.kind,
        "organisation_id": facts.get("organisation_id"),
        "connection_id": alert.connection_id,
    }
