"""HubSpot webhooks: verify the signature, parse the events.

Signature v3 (https://developers.hubspot.com/docs/api/webhooks/validating-requests):
``X-HubSpot-Signature-v3 = base64(HMAC-SHA256(client_secret, METHOD + URI + body +
timestamp))`` with ``X-HubSpot-Request-Timestamp`` (ms) at most 5 minutes old. The URI is
the full URL HubSpot called, with ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B``
decoded. v1 (``sha256(secret + body)``) and v2 (``sha256(secret + METHOD + URI + body)``)
carry no timestamp, so they are refused unless the connection opts in.

Events (a body is a JSON array of up to 100, of any of the app's subscriptions):

- legacy types ``company.creation`` ... ``contact.restore`` name the object in
  ``objectId``; the generic types (``object.creation``, ``object.propertyChange``, ...;
  https://developers.hubspot.com/changelog/public-beta-generic-webhook-subscriptions) name
  its type in ``objectTypeId`` (``0-1`` contacts, ``0-2`` companies);
- ``*.associationChange`` has no ``objectId``: it names ``fromObjectId`` (the subscribed
  side), ``toObjectId``, ``associationType``, ``associationRemoved``,
  ``isPrimaryAssociation`` (https://developers.hubspot.com/changelog/new-subscription-types-for-webhooks);
- ``contact.privacyDeletion`` (a GDPR delete) is the contact's deletion;
- events of objects crmsync does not sync (deals, tickets, ...) and of kinds it does not
  know are left out, not refused: HubSpot resends a refused body whole, so one such event
  would hold back the company and contact events batched with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from connectors.base import WebhookEvent, WebhookEventKind, WebhookRequest
from connectors.errors import WebhookRejected

MAX_AGE_MS = 5 * 60 * 1000
_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_KINDS: dict[str, WebhookEventKind] = {
    "creation": "created",
    "propertyChange": "changed",
    "deletion": "deleted",
    "merge": "merged",
    "restore": "restored",
    "associationChange": "changed",
    "privacyDeletion": "deleted",
}
_OBJECTS: dict[str, Literal["customer", "contact"]] = {"company": "customer", "contact": "contact"}
#: ``objectTypeId`` of the generic ``object.*`` events -> the legacy object name
_TYPE_IDS = {"0-1": "contact", "0-2": "company"}


def decode_uri(uri: str) -> str:
    for encoded, char in _DECODE.items():
        uri = uri.replace(encoded, char).replace(encoded.lower(), char)
    return uri


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + decode_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def signature_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    data = secret.encode() + method.upper().encode() + uri.encode() + body
    return hashlib.sha256(data).hexdigest()


def signature_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify(
    request: WebhookRequest,
    client_secret: str,
    *,
    accept_v1_v2: bool = False,
    now_ms: int | None = None,
) -> None:
    """Raise ``WebhookRejected(401)`` unless ``request`` is signed by HubSpot and fresh."""
    if not client_secret:
        raise WebhookRejected(401, "no client secret configured for HubSpot webhooks")
    headers = request.headers
    v3 = _header(headers, "X-HubSpot-Signature-v3")
    if v3 is not None:
        stamp = _header(headers, "X-HubSpot-Request-Timestamp")
        if not stamp or not stamp.strip().isdigit():
            raise WebhookRejected(401, "missing or malformed X-HubSpot-Request-Timestamp")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(now - int(stamp)) > MAX_AGE_MS:
            raise WebhookRejected(401, "stale webhook: timestamp is more than 5 minutes off")
        expected = signature_v3(client_secret, request.method, request.url, request.body, stamp)
        if not hmac.compare_digest(expected.encode(), v3.strip().encode()):
            raise WebhookRejected(401, "bad X-HubSpot-Signature-v3")
        return
    legacy = _header(headers, "X-HubSpot-Signature")
    if legacy is None:
        raise WebhookRejected(401, "unsigned webhook (no X-HubSpot-Signature-v3)")
    if not accept_v1_v2:
        raise WebhookRejected(401, "signature v1/v2 not accepted for this connection (v3 only)")
    version = (_header(headers, "X-HubSpot-Signature-Version") or "v1").strip().lower()
    if version == "v2":
        expected = signature_v2(client_secret, request.method, request.url, request.body)
    elif version == "v1":
        expected = signature_v1(client_secret, request.body)
    else:
        raise WebhookRejected(401, f"unknown signature version {version!r}")
    if not hmac.compare_digest(expected.encode(), legacy.strip().lower().encode()):
        raise WebhookRejected(401, f"bad X-HubSpot-Signature ({version})")


def _object_name(raw: dict[str, Any], prefix: str, action: str) -> str:
    """The legacy object name of an event (``company``, ``contact``, ``deal`` ...)."""
    if prefix != "object":
        return prefix
    key = "fromObjectTypeId" if action == "associationChange" else "objectTypeId"
    type_id = str(raw.get(key) or raw.get("objectTypeId") or "")
    return _TYPE_IDS.get(type_id, type_id or "object")


def _event(raw: Any) -> WebhookEvent | None:
    """The event ``raw`` describes; None for an object or kind crmsync does not sync."""
    if not isinstance(raw, dict):
        raise WebhookRejected(400, "webhook event is not an object")
    try:
        key = str(raw["eventId"])
        sub_type = str(raw["subscriptionType"])
    except KeyError as exc:
        raise WebhookRejected(400, f"webhook event without {exc.args[0]!r}") from None
    prefix, _, action = sub_type.partition(".")
    object_name = _object_name(raw, prefix, action)
    if object_name not in _OBJECTS or action not in _KINDS:
        return None
    id_key = "fromObjectId" if action == "associationChange" else "objectId"
    object_id = raw.get(id_key)
    if object_id is None or str(object_id) == "":
        raise WebhookRejected(400, f"{sub_type} webhook event without {id_key!r}")
    occurred = raw.get("occurredAt")
    occurred_at = None
    if isinstance(occurred, int | float) and not isinstance(occurred, bool):
        occurred_at = datetime.fromtimestamp(occurred / 1000, UTC)
    merged_into: str | None = None
    merged_ids: tuple[str, ...] = ()
    crm_id = str(object_id)
    if action == "merge":
        # newObjectId names the merged record; since 2024 it is a new one, and the primary
        # (primaryObjectId) was merged into it as much as the secondaries (mergedObjectIds)
        # (https://developers.hubspot.com/changelog/new-subscription-types-for-webhooks)
        survivor = raw.get("newObjectId") or raw.get("primaryObjectId") or object_id
        merged_into = str(survivor)
        merged = raw.get("mergedObjectIds") or []
        if not isinstance(merged, list):
            raise WebhookRejected(400, "mergedObjectIds is not a list")
        olds = [raw.get("primaryObjectId"), *merged, object_id]
        merged_ids = tuple(
            dict.fromkeys(str(i) for i in olds if i is not None and str(i) != merged_into)
        )
        crm_id = merged_into
    return WebhookEvent(
        key=key,
        kind=_KINDS[action],
        object_type=_OBJECTS[object_name],
        crm_id=crm_id,
        occurred_at=occurred_at,
        merged_into=merged_into,
        merged_ids=merged_ids,
        payload=raw,
    )


def parse(body: bytes) -> list[WebhookEvent]:
    """The events of a verified body (a JSON array); ``WebhookRejected(400)`` if malformed."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "webhook body is not JSON") from None
    if not isinstance(data, list):
        raise WebhookRejected(400, "webhook body is not a JSON array")
    events = [_event(item) for item in data]
    return [event for event in events if event is not None]
