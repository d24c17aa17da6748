"""Salesforce Outbound Messages: a SOAP ``notifications`` envelope POSTed to a listener.

Salesforce queues one notification per saved record, sends up to 100 per message, and
retries a message until the listener answers 200 with ``<Ack>true</Ack>`` (for 24 hours,
with back-off). Delivery is at least once and carries the record's latest data only.
See https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_understanding.htm
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import requests

from sandbox.salesforce.ids import make_id

Record = dict[str, Any]
_ACK = re.compile(rb"<(?:[\w.-]+:)?Ack>\s*true\s*</(?:[\w.-]+:)?Ack>")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"

DEFAULT_FIELDS = (
    "Id",
    "Name",
    "BillingStreet",
    "BillingCity",
    "BillingState",
    "BillingPostalCode",
    "BillingCountry",
    "BillingCountryCode",
    "IsDeleted",
    "LastModifiedById",
    "SystemModstamp",
)


@dataclass(frozen=True)
class OutboundConfig:
    url: str | None = None
    enabled: bool = True
    secret: str | None = None
    #: where the secret travels: "query" (``?secret=``) or "header" (``X-Crmsync-Secret``)
    secret_mode: str = "query"
    batch_size: int = 100
    retry_seconds: float = 1.0
    max_retry_seconds: float = 60.0
    include_api_writes: bool = True
    fields: tuple[str, ...] = DEFAULT_FIELDS
    #: the objects whose saves send a message (an Outbound Message is defined on one
    #: object; an org may define them on Account, Contact or any other): Account and
    #: Contact are the ones this org has
    objects: tuple[str, ...] = ("Account",)
    timeout_seconds: float = 10.0
    verify: bool | str = True

    def target(self) -> tuple[str, dict[str, str]]:
        assert self.url is not None
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        if not self.secret:
            return self.url, headers
        if self.secret_mode == "header":
            headers["X-Crmsync-Secret"] = self.secret
            return self.url, headers
        parts = urlsplit(self.url)
        query = (parts.query + "&" if parts.query else "") + urlencode({"secret": self.secret})
        return urlunsplit(parts._replace(query=query)), headers


@dataclass
class DeliveryStats:
    attempts: int = 0
    delivered_messages: int = 0
    delivered_notifications: int = 0
    failures: int = 0
    last_status: int | None = None
    last_error: str | None = None
    bodies: list[bytes] = field(default_factory=list)


def envelope(
    organization_id: str,
    action_id: str,
    base_url: str,
    notifications: list[tuple[str, str, Record]],
    fields: tuple[str, ...],
) -> bytes:
    """The SOAP body Salesforce sends: ``notifications`` are (notification id, type, record)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        "<soapenv:Body>",
        f'<notifications xmlns="{OUTBOUND_NS}">',
        f"<OrganizationId>{organization_id}</OrganizationId>",
        f"<ActionId>{action_id}</ActionId>",
        '<SessionId xsi:nil="true"/>',
        f"<EnterpriseUrl>{escape(base_url)}/services/Soap/c/59.0/{organization_id[:15]}"
        "</EnterpriseUrl>",
        f"<PartnerUrl>{escape(base_url)}/services/Soap/u/59.0/{organization_id[:15]}</PartnerUrl>",
    ]
    for notification_id, sobject_type, rec in notifications:
        parts.append(f"<Notification><Id>{notification_id}</Id>")
        parts.append(f'<sObject xsi:type="sf:{sobject_type}" xmlns:sf="{SOBJECT_NS}">')
        for name in fields:
            value = rec.get(name)
            if value is None:
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if name == "SystemModstamp" or name.endswith("Date"):
                text = text.replace("+0000", "Z")
            parts.append(f"<sf:{name}>{escape(text)}</sf:{name}>")
        parts.append("</sObject></Notification>")
    parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
    return "".join(parts).encode("utf-8")


class OutboundDelivery:
    """Queues notifications and delivers them on a background thread."""

    def __init__(
        self,
        organization_id: str,
        snapshot: Callable[[str, str], Record | None],
        base_url: Callable[[], str],
    ) -> None:
        self.organization_id = organization_id
        self.action_id = make_id("04k", 1)
        self._snapshot = snapshot
        self._base_url = base_url
        self.config = OutboundConfig()
        self.stats = DeliveryStats()
        self._queue: list[tuple[str, str, str]] = []  # (notification id, type, record id)
        self._counter = 0
        self._inflight = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._session.trust_env = False

    def configure(self, **changes: Any) -> OutboundConfig:
        with self._cond:
            if "fields" in changes and changes["fields"] is not None:
                changes["fields"] = tuple(changes["fields"])
            self.config = replace(self.config, **changes)
            self._cond.notify_all()
        self._ensure_thread()
        return self.config

    def notify(self, sobject_type: str, record_id: str, source: str) -> None:
        cfg = self.config
        if cfg.url is None or sobject_type not in cfg.objects:
            return
        if source == "api" and not cfg.include_api_writes:
            return
        with self._cond:
            self._counter += 1
            self._queue.append((make_id("04l", self._counter), sobject_type, record_id))
            self._cond.notify_all()
        self._ensure_thread()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._inflight

    def clear(self) -> None:
        with self._cond:
            self._queue.clear()
            self.stats = DeliveryStats()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every queued notification was acknowledged (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._session.close()

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="sandbox-salesforce-outbound"
                )
                self._thread.start()

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._stop and not (
                    self._queue and self.config.enabled and self.config.url
                ):
                    self._cond.wait(0.5)
                if self._stop:
                    return
                cfg = self.config
                batch = self._queue[: max(1, min(cfg.batch_size, 100))]
                del self._queue[: len(batch)]
                self._inflight = len(batch)
            ok = self._deliver(cfg, batch)
            with self._cond:
                self._inflight = 0
                if not ok:
                    self._queue[0:0] = batch  # retried first, as Salesforce retries a message
                self._cond.notify_all()
            if ok:
                failures = 0
                continue
            failures += 1
            delay = min(cfg.max_retry_seconds, cfg.retry_seconds * 2 ** min(failures - 1, 10))
            with self._cond:
                self._cond.wait_for(lambda: self._stop, timeout=delay)

    def _deliver(self, cfg: OutboundConfig, batch: list[tuple[str, str, str]]) -> bool:
        notifications = []
        for notification_id, sobject_type, record_id in batch:
            rec = self._snapshot(sobject_type, record_id)
            if rec is not None:
                notifications.append((notification_id, sobject_type, rec))
        if not notifications:
            return True
        body = envelope(
            self.organization_id, self.action_id, self._base_url(), notifications, cfg.fields
        )
        url, headers = cfg.target()
        self.stats.attempts += 1
        try:
            response = self._session.post(
                url, data=body, headers=headers, timeout=cfg.timeout_seconds, verify=cfg.verify
            )
        except requests.RequestException as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            return False
        self.stats.last_status = response.status_code
        if response.status_code == 200 and _ACK.search(response.content):
            self.stats.delivered_messages += 1
            self.stats.delivered_notifications += len(notifications)
            self.stats.bodies.append(body)
            del self.stats.bodies[:-20]
            return True
        self.stats.failures += 1
        self.stats.last_error = response.text[:200]
        return False
