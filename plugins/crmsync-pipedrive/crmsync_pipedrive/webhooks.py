"""Pipedrive webhooks (v1 payloads), authenticated with HTTP basic auth.

Pipedrive signs nothing: a webhook is created (``POST /v1/webhooks``) with
``http_auth_user`` / ``http_auth_password`` and every delivery carries them in an
``Authorization: Basic`` header, which is checked here in constant time.

One delivery is one event: ``{"meta": {"action", "object", "id", "timestamp_micro",
"webhook_id", ...}, "current": {...}, "previous": {...}, "event": "updated.organization",
"retry": N}``. ``action`` is ``added``, ``updated``, ``deleted`` or ``merged``; a merge names
the survivor in ``meta.id`` / ``current`` and the merged-away record in ``previous``. A
retried delivery keeps its ``meta``, so the de-duplication key is built from it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import WebhookEvent, WebhookEventKind
from connectors.errors import WebhookRejected

KINDS: dict[str, WebhookEventKind] = {
    "added": "created",
    "updated": "changed",
    "deleted": "deleted",
    "merged": "merged",
}
OBJECTS = {"organization": "customer", "person": "contact"}


def verify_basic_auth(headers: Mapping[str, str], user: str | None, password: str | None) -> None:
    """Raise ``WebhookRejected(401)`` unless the request carries exactly these credentials."""
    if not password:
        raise WebhookRejected(401, "this connection has no webhook password set")
    found = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
    scheme, _, encoded = found.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookRejected(401, "no basic auth credentials")
    try:
        given_user, sep, given_password = (
            base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        raise WebhookRejected(401, "malformed basic auth credentials") from None
    user_ok = hmac.compare_digest(given_user.encode(), (user or "").encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    if not (sep and user_ok and password_ok):
        raise WebhookRejected(401, "wrong webhook credentials")


def parse(body: bytes) -> list[WebhookEvent]:
    """The event of one delivery (none for objects crmsync does not sync)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "the body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise WebhookRejected(400, "not a Pipedrive webhook (no meta)")
    meta: dict[str, Any] = payload["meta"]
    action, obj, record_id = meta.get("action"), meta.get("object"), meta.get("id")
    if action not in KINDS or record_id is None:
        raise WebhookRejected(400, f"unknown webhook action {action!r}")
    if obj not in OBJECTS:
        return []
    previous = payload.get("previous") if isinstance(payload.get("previous"), dict) else {}
    merged_ids: tuple[str, ...] = ()
    merged_into = None
    if action == "merged":
        merged_into = str(record_id)
        loser = (previous or {}).get("id")
        merged_ids = (str(loser),) if loser is not None and str(loser) != merged_into else ()
    micro = meta.get("timestamp_micro") or meta.get("timestamp_milli") or meta.get("timestamp")
    occurred = None
    if isinstance(meta.get("timestamp"), int | float):
        occurred = datetime.fromtimestamp(float(meta["timestamp"]), UTC)
    key = f"{meta.get('webhook_id')}:{obj}:{action}:{record_id}:{micro}"
    return [
        WebhookEvent(
            key=key,
            kind=KINDS[action],
            object_type="customer" if OBJECTS[obj] == "customer" else "contact",
            crm_id=str(record_id),
            occurred_at=occurred,
            merged_into=merged_into,
            merged_ids=merged_ids,
            payload={"event": payload.get("event"), "retry": payload.get("retry")},
        )
    ]
