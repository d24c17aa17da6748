"""HubSpot webhook delivery: events batched (≤ 100 per request), signed v3, at least once.

A background thread takes changes from :class:`sandbox.hubspot.crm.Portal`, turns them into
HubSpot's event objects and POSTs them as a JSON array to the configured URL with::

    X-HubSpot-Signature-v3      base64(HMAC-SHA256(secret, METHOD + URI + body + timestamp))
    X-HubSpot-Request-Timestamp milliseconds since the epoch
    X-HubSpot-Signature         v2: hex(sha256(secret + METHOD + URI + body))
    X-HubSpot-Signature-Version v2

A batch answered with anything but 2xx (or not answered) is sent again with
``attemptNumber`` + 1 after ``retry_delay`` seconds, up to ``max_attempts`` times.
``duplicate=True`` sends every batch twice on purpose (same ``eventId``s), to test
de-duplication. ``flush()`` waits until everything queued was delivered or given up.

Event forms (both documented; an app gets the form its subscriptions use):

- legacy (default): ``subscriptionType`` ``company.creation`` ... with ``objectId``;
- ``generic=True``: ``object.creation``, ``object.propertyChange``, ``object.deletion``,
  ``object.merge``, ``object.restore`` with ``objectTypeId`` (``0-2`` companies, ``0-1``
  contacts) (https://developers.hubspot.com/changelog/public-beta-generic-webhook-subscriptions);
- association changes are sent only to a configuration that names them in
  ``subscriptions`` (``contact.associationChange``, ``company.associationChange``), one
  event per side, with ``fromObjectId``, ``toObjectId``, ``associationType``
  (``CONTACT_TO_COMPANY`` / ``COMPANY_TO_CONTACT``), ``associationRemoved`` and
  ``isPrimaryAssociation`` and no ``objectId``
  (https://developers.hubspot.com/changelog/new-subscription-types-for-webhooks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.hubspot.crm import Change

SINGULAR = {"companies": "company", "contacts": "contact"}
_SUBSCRIPTION_IDS = {
    f"{kind}.{event}": 2_100_000 + n
    for n, (kind, event) in enumerate(
        (k, e)
        for k in ("company", "contact")
        for e in ("creation", "propertyChange", "deletion", "merge", "restore", "associationChange")
    )
}
#: the generic form's ``objectTypeId`` of each object
_TYPE_IDS = {"company": "0-2", "contact": "0-1"}


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def sign_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


@dataclass
class WebhookConfig:
    url: str | None = None
    client_secret: str = "sandbox-client-secret"
    enabled: bool = False
    app_id: int = 424242
    portal_id: int = 62515
    max_attempts: int = 5
    retry_delay: float = 0.05
    batch_size: int = 100
    duplicate: bool = False
    timeout: float = 5.0
    #: subscription types to deliver ("company.creation", ...); empty: all but the
    #: association changes (delivered only when named)
    subscriptions: list[str] = field(default_factory=list)
    #: the generic ``object.*`` event form, the object in ``objectTypeId``
    generic: bool = False


@dataclass
class Delivery:
    attempt: int
    status: int | None
    events: list[dict[str, Any]]
    body: bytes
    headers: dict[str, str]


class WebhookDispatcher:
    def __init__(self) -> None:
        self.config = WebhookConfig()
        self.deliveries: list[Delivery] = []
        self._queue: deque[tuple[float, int, list[dict[str, Any]]]] = deque()
        self._pending: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stop = False
        self._next_event_id = 1_000
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------

    def configure(self, **changes: Any) -> WebhookConfig:
        with self._cond:
            for name, value in changes.items():
                if not hasattr(self.config, name):
                    raise ValueError(f"unknown webhook setting {name!r}")
                setattr(self.config, name, value)
            self._cond.notify_all()
        if self.config.enabled:
            self._ensure_thread()
        return self.config

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="hubspot-webhooks"
                )
                self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._cond:
            self._queue.clear()
            self._pending.clear()
            self.deliveries.clear()

    # -- events --------------------------------------------------------------------------

    def submit(self, changes: list[Change]) -> None:
        cfg = self.config
        if not cfg.enabled or not cfg.url:
            return
        with self._cond:
            for change in changes:
                for event in self._events(change):
                    sub_type = event["subscriptionType"]
                    if cfg.subscriptions and sub_type not in cfg.subscriptions:
                        continue
                    if not cfg.subscriptions and sub_type.endswith(".associationChange"):
                        continue
                    self._pending.append(event)
            self._cond.notify_all()

    def _events(self, change: Change) -> list[dict[str, Any]]:
        if change.kind == "associationChange":
            return self._numbered(self._association_events(change))
        cfg = self.config
        kind = SINGULAR[change.object_type]
        base = {
            "subscriptionId": _SUBSCRIPTION_IDS[f"{kind}.{change.kind}"],
            "portalId": cfg.portal_id,
            "appId": cfg.app_id,
            "occurredAt": change.occurred_ms,
            "subscriptionType": f"{kind}.{change.kind}",
            "attemptNumber": 0,
            "objectId": change.object_id,
            "changeSource": change.source,
            "sourceId": self._source_id(change.source),
        }
        if cfg.generic:
            base["subscriptionType"] = f"object.{change.kind}"
            base["objectTypeId"] = _TYPE_IDS[kind]
        out: list[dict[str, Any]] = []
        if change.kind == "propertyChange":
            for name, value in change.properties.items():
                out.append({**base, "propertyName": name, "propertyValue": value or ""})
        elif change.kind == "merge":
            # the merge payload as documented in "New subscription types for Webhooks"
            # (https://developers.hubspot.com/changelog/new-subscription-types-for-webhooks):
            # primaryObjectId the primary record, mergedObjectIds "the secondary" records,
            # newObjectId "the Id of the object that was created from the result of the
            # merge" (the primary's own id when merges keep it), numberOfPropertiesMoved
            # how many properties the merge carried over
            assert change.primary_id is not None
            out.append(
                {
                    **base,
                    "primaryObjectId": change.primary_id,
                    "mergedObjectIds": [i for i in change.merged_ids if i != change.primary_id],
                    "newObjectId": change.new_id or change.primary_id,
                    "numberOfPropertiesMoved": change.properties_moved,
                }
            )
        else:
            out.append(dict(base))
        return self._numbered(out)

    def _source_id(self, source: str) -> str:
        return "userId:1234" if source == "CRM_UI" else f"{self.config.app_id}"

    def _association_events(self, change: Change) -> list[dict[str, Any]]:
        """A contact-company association change as its two events, one per side."""
        cfg = self.config
        assert change.to_id is not None
        sides = (
            ("contact", change.object_id, change.to_id),
            ("company", change.to_id, change.object_id),
        )
        out = []
        for kind, from_id, to_id in sides:
            other = "company" if kind == "contact" else "contact"
            out.append(
                {
                    "subscriptionId": _SUBSCRIPTION_IDS[f"{kind}.associationChange"],
                    "portalId": cfg.portal_id,
                    "appId": cfg.app_id,
                    "occurredAt": change.occurred_ms,
                    "subscriptionType": f"{kind}.associationChange",
                    "attemptNumber": 0,
                    "changeSource": change.source,
                    "sourceId": self._source_id(change.source),
                    "associationType": f"{kind}_TO_{other}".upper(),
                    "fromObjectId": from_id,
                    "toObjectId": to_id,
                    "associationRemoved": change.removed,
                    "isPrimaryAssociation": change.primary,
                }
            )
        return out

    def _numbered(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for event in events:
            event["eventId"] = self._next_event_id
            self._next_event_id += 1
        return events

    # -- delivery ------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was delivered (or given up); True if so."""
        self._ensure_thread()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._pending or self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        client = httpx.Client(timeout=self.config.timeout)
        try:
            while True:
                with self._cond:
                    while not self._stop and not self._pending and not self._queue:
                        self._cond.wait(0.5)
                    if self._stop:
                        return
                    while self._pending:
                        batch = self._pending[: self.config.batch_size]
                        del self._pending[: self.config.batch_size]
                        self._queue.append((0.0, 0, batch))
                    due, attempt, events = self._queue[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        self._cond.wait(min(wait, 0.5))
                        continue
                    self._queue.popleft()
                    self._busy = True
                try:
                    ok = self._send(client, attempt, events)
                    if ok and self.config.duplicate:
                        self._send(client, attempt, events)
                finally:
                    with self._cond:
                        self._busy = False
                        if not ok and attempt + 1 < self.config.max_attempts:
                            due = time.monotonic() + self.config.retry_delay
                            self._queue.append((due, attempt + 1, events))
                        self._cond.notify_all()
        finally:
            client.close()

    def _send(self, client: httpx.Client, attempt: int, events: list[dict[str, Any]]) -> bool:
        cfg = self.config
        url = cfg.url
        if not url:
            return True
        payload = [{**e, "attemptNumber": attempt} for e in events]
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (sandbox)",
            "X-HubSpot-Signature-v3": sign_v3(cfg.client_secret, "POST", url, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature": sign_v2(cfg.client_secret, "POST", url, body),
            "X-HubSpot-Signature-Version": "v2",
        }
        status: int | None = None
        try:
            status = client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = None
        with self._cond:
            self.deliveries.append(Delivery(attempt, status, payload, body, headers))
        return status is not None and 200 <= status < 300
