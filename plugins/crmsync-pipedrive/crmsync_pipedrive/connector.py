"""The Pipedrive connector: Organizations are customers, Persons are their contacts.

Calls (Pipedrive API v1 for reads, v2 for organization writes; see the README of this
package for the documentation each follows), for N organizations of which C changed:

- full pull: ``GET /v1/organizations`` sorted by id, 500 per page (offset paging by
  ``start`` while ``more_items_in_collection``): ``ceil(N/500)`` calls;
- incremental pull: ``GET /v1/recents?items=organization`` since the watermark second,
  500 per page: ``ceil(C/500)`` calls, 1 when nothing changed. ``update_time`` has whole
  seconds, so the cursor keeps the watermark second and the ids already read in it; each
  page asks again from the newest second read (never a stale offset), stepping ``start``
  only past a page that held nothing new (more than 500 changes in one second). The ids
  read in the watermark second are kept with a fingerprint of what was read, so a record
  that changes again within that same second is read again, not lost;
- pull by ids: one ``GET /v1/organizations/{id}`` each (v1 has no batch read);
- push: one ``PATCH /v2/organizations/{id}`` per update (plus one read of the record when
  some, not all, address parts change: the address is written whole) and, per create, an
  exact ``itemSearch`` on the billing-id field followed by ``POST /v2/organizations`` (or a
  ``PATCH`` of the one found: a retried create never makes a second organization).

Deletes come through pulls (``active_flag: false``). A merge shows on pulls as the
merged-away organization deleted and the survivor changed (Pipedrive keeps no link between
them); the v1 ``merged`` webhook names both, so merges are reported through webhooks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from connectors.base import (
    ApiUsage,
    CallStats,
    Capabilities,
    ConnectionConfig,
    CrmContact,
    CrmCustomer,
    CrmField,
    CustomerPush,
    Page,
    PushResult,
    RateGate,
    RecordError,
    WebhookEvent,
    WebhookRequest,
)
from connectors.calls import RATE_LIMIT_BUDGET_SECONDS, CallCounter, LocalRateGate, RetryPolicy
from connectors.errors import ConfigError
from connectors.telemetry import CallLabels
from crmsync_pipedrive import mapping, webhooks
from crmsync_pipedrive.client import Answer, PipedriveClient
from crmsync_pipedrive.config import PipedriveCredentials, PipedriveSettings

PAGE_LIMIT = 500  # Pipedrive's largest page
T = TypeVar("T")


def _seconds(stamp: str | None) -> int:
    if not stamp:
        return 0
    return int(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


def _stamp(seconds: int) -> str:
    return datetime.fromtimestamp(max(seconds, 0), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _when(stamp: str | None) -> datetime | None:
    return datetime.fromtimestamp(_seconds(stamp), UTC) if stamp else None


class PipedriveConnector:
    """Implements :class:`connectors.base.Connector` for Pipedrive over httpx."""

    key: ClassVar[str] = "pipedrive"
    capabilities: ClassVar[Capabilities] = Capabilities(
        webhooks=True, merges="webhooks", contacts=True, field_describe=True
    )
    webhook_setup: ClassVar[str] = (
        "Webhooks: create one per object in Pipedrive (POST /v1/webhooks) with "
        "subscription_url {url}, version 1.0, event_object organization (and person for "
        "contacts), event_action *, and http_auth_user / http_auth_password set to this "
        "connection's webhook user and password."
    )
    settings_model: ClassVar[type[PipedriveSettings]] = PipedriveSettings
    credentials_model: ClassVar[type[PipedriveCredentials]] = PipedriveCredentials

    def __init__(self, config: ConnectionConfig, gate: RateGate | None = None) -> None:
        self.config = config
        settings = config.settings
        self._company_url = str(settings.get("company_url") or "")
        if not self._company_url:
            raise ConfigError("company_url is required (https://yourcompany.pipedrive.com)")
        self.external_id_key = str(settings.get("external_id_key") or "")
        if not self.external_id_key:
            raise ConfigError("external_id_key (the billing-id field's API key) is required")
        self._skew = float(settings.get("clock_skew_seconds", 1.0))
        self._daily_limit = int(settings.get("daily_request_limit", 10_000))
        self._counter = CallCounter()
        self._client = PipedriveClient(
            self._company_url,
            config.credentials.get("api_token", ""),
            timeout=float(settings.get("request_timeout", 30.0)),
            gate=gate or LocalRateGate(),
            counter=self._counter,
            labels=CallLabels("pipedrive", config.organisation_id, config.connection_id),
            policy=RetryPolicy(
                attempts=int(settings.get("max_attempts", 5)),
                base_seconds=float(settings.get("backoff_base_seconds", 0.5)),
                rate_limit_budget_seconds=float(
                    settings.get("rate_limit_budget_seconds", RATE_LIMIT_BUDGET_SECONDS)
                ),
            ),
        )
        self.fmap = mapping.field_map(config.field_map)
        self.mapped_fields: tuple[str, ...] = tuple(self.fmap)

    @property
    def api_calls(self) -> int:
        return self._counter.count

    @property
    def calls(self) -> CallStats:
        return self._counter

    @property
    def api_usage(self) -> ApiUsage | None:
        """The day's use: the plan's ``daily_request_limit`` less what Pipedrive says is
        left (``x-daily-requests-left``)."""
        left = self._client.daily_left
        if left is None:
            return None
        limit = max(self._daily_limit, left)
        return ApiUsage(used=limit - left, limit=limit, window="day (UTC)")

    def close(self) -> None:
        self._client.close()

    # -- describe and check
    def describe_fields(self) -> list[CrmField]:
        fields: list[CrmField] = []
        start: int | None = 0
        while start is not None:
            answer = self._client.call(
                "GET", "/v1/organizationFields", params={"start": start, "limit": PAGE_LIMIT}
            )
            for raw in answer.body.get("data") or []:
                key, label, kind = str(raw["key"]), str(raw.get("name")), str(raw["field_type"])
                if kind == "address":
                    fields += [
                        CrmField(f"{key}.{part}", f"{label}: {part}", "text")
                        for part in mapping.ADDRESS_PARTS
                    ]
                fields.append(
                    CrmField(key, label, kind, bool(raw.get("edit_flag")) or key == "name")
                )
            start = _next_start(answer)
        return fields

    def check(self) -> None:
        known = {f.name for f in self.describe_fields()}
        wanted = [*mapping.crm_fields(self.fmap), self.external_id_key]
        missing = sorted({f for f in wanted if f not in known})
        if missing:
            raise ConfigError(
                "Pipedrive organizations have no field(s) "
                + ", ".join(missing)
                + " (custom fields are named by their API key: Settings > Data fields)"
            )

    # -- pulls
    def _customer(self, record: dict[str, Any]) -> CrmCustomer:
        billing_id = record.get(self.external_id_key)
        return CrmCustomer(
            id=str(record["id"]),
            fields=mapping.to_fields(record, self.fmap),
            modified_at=_when(record.get("update_time")),
            deleted=not record.get("active_flag", True),
            billing_id=str(billing_id) if billing_id else None,
        )

    def _contact(self, record: dict[str, Any]) -> CrmContact:
        emails = [e for e in record.get("email") or [] if isinstance(e, dict) and e.get("value")]
        primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
        org = record.get("org_id")
        org_id = org.get("value") if isinstance(org, dict) else org
        return CrmContact(
            id=str(record["id"]),
            customer_id=str(org_id) if org_id else None,
            name=str(record.get("name") or ""),
            email=str(primary["value"]) if primary else None,
            modified_at=_when(record.get("update_time")),
            deleted=not record.get("active_flag", True),
        )

    def pull_customers(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmCustomer]]:
        return self._pull("/v1/organizations", "organization", self._customer, cursor, full)

    def pull_contacts(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmContact]]:
        return self._pull("/v1/persons", "person", self._contact, cursor, full)

    def _pull(
        self,
        path: str,
        item: str,
        convert: Callable[[dict[str, Any]], T],
        cursor: str | None,
        full: bool,
    ) -> Iterator[Page[T]]:
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        if (full or not state) and state.get("mode") != "full":
            # a new full pull; the next incremental pull starts from this pull's start
            state = {"mode": "full", "start": 0, "since": int(time.time() - self._skew), "seen": {}}
        if state.get("mode") == "full":
            yield from self._full(path, convert, state)
        else:
            yield from self._incremental(item, convert, state)

    def _full(
        self, path: str, convert: Callable[[dict[str, Any]], T], state: dict[str, Any]
    ) -> Iterator[Page[T]]:
        while True:
            answer = self._client.call(
                "GET",
                path,
                params={"start": state["start"], "limit": PAGE_LIMIT, "sort": "id ASC"},
            )
            records = answer.body.get("data") or []
            # records of the watermark second are read: the incremental pull skips them
            # unless they change again (in that same second, even)
            state["seen"].update(
                {
                    str(r["id"]): _version(r)
                    for r in records
                    if _seconds(r.get("update_time")) == state["since"]
                }
            )
            following = _next_start(answer)
            if following is None:
                yield Page(
                    [convert(r) for r in records],
                    json.dumps({"w": state["since"], "seen": state["seen"], "start": 0}),
                )
                return
            state["start"] = following
            yield Page([convert(r) for r in records], json.dumps(state))

    def _incremental(
        self, item: str, convert: Callable[[dict[str, Any]], T], state: dict[str, Any]
    ) -> Iterator[Page[T]]:
        watermark, start = int(state["w"]), int(state["start"])
        seen: dict[str, str] = dict(state["seen"])
        while True:
            answer = self._client.call(
                "GET",
                "/v1/recents",
                params={
                    # "changes after" the timestamp: one second less reads the watermark's own
                    "since_timestamp": _stamp(watermark - 1),
                    "items": item,
                    "start": start,
                    "limit": PAGE_LIMIT,
                },
            )
            rows = [r["data"] for r in answer.body.get("data") or [] if r.get("item") == item]
            fresh = [
                r
                for r in rows
                if r is not None
                and _seconds(r.get("update_time")) >= watermark
                and not (
                    _seconds(r.get("update_time")) == watermark
                    and seen.get(str(r["id"])) == _version(r)
                )
            ]
            for record in fresh:
                second = _seconds(record.get("update_time"))
                if second > watermark:
                    watermark, seen = second, {}
                if second == watermark:
                    seen[str(record["id"])] = _version(record)
            following = _next_start(answer)
            if fresh:
                start = 0  # ask again from the newest second read
            elif following is not None:
                start = following  # a page of records already read: step over it
            cursor = json.dumps({"w": watermark, "seen": seen, "start": start})
            yield Page([convert(r) for r in fresh], cursor)
            if following is None:
                return

    def pull_customers_by_ids(self, ids: Sequence[str]) -> list[CrmCustomer]:
        found = []
        for crm_id in ids:
            answer = self._client.call(
                "GET", f"/v1/organizations/{int(crm_id)}", record_statuses=(400, 404)
            )
            if answer.ok and isinstance(answer.body.get("data"), dict):
                found.append(self._customer(answer.body["data"]))
            else:
                found.append(CrmCustomer(id=crm_id, fields={}, deleted=True))
        return found

    # -- pushes
    def push_customers(self, pushes: Sequence[CustomerPush]) -> list[PushResult]:
        return [self._push(push) for push in pushes]

    def _push(self, push: CustomerPush) -> PushResult:
        crm_id = push.crm_id
        if crm_id is None:
            search = self._client.call(
                "GET",
                "/v1/itemSearch/field",
                params={
                    "term": push.billing_id,
                    "field_type": "organizationField",
                    "field_key": self.external_id_key,
                    "exact_match": "true",
                    "return_item_ids": "true",
                },
            )
            hits = search.body.get("data") or []
            if hits:
                crm_id = str(hits[0]["id"])  # made by an earlier try of this create
        current = None
        if crm_id is not None and mapping.touches_address_partly(push.fields, self.fmap):
            read = self._client.call(
                "GET", f"/v1/organizations/{crm_id}", record_statuses=(400, 404)
            )
            if not read.ok or not (read.body.get("data") or {}).get("active_flag"):
                return self._refused(push, read if not read.ok else Answer(404, {}))
            current = mapping.address_of(read.body["data"])
        body = mapping.to_body(push.fields, self.fmap, current)
        if crm_id is not None and push.write_billing_id:
            body.setdefault("custom_fields", {})[self.external_id_key] = push.billing_id
        if crm_id is None:
            body.setdefault("custom_fields", {})[self.external_id_key] = push.billing_id
            answer = self._client.call(
                "POST", "/v2/organizations", json=body, record_statuses=(400, 404)
            )
        else:
            answer = self._client.call(
                "PATCH", f"/v2/organizations/{crm_id}", json=body, record_statuses=(400, 404)
            )
        if not answer.ok:
            return self._refused(push, answer)
        return PushResult(push.billing_id, str(answer.body["data"]["id"]))

    @staticmethod
    def _refused(push: CustomerPush, answer: Answer) -> PushResult:
        if answer.status == 404:
            error = RecordError("not_found", "404", answer.error or "Organization not found")
        else:
            error = RecordError("validation", str(answer.status), answer.error)
        return PushResult(push.billing_id, push.crm_id, error)

    # -- webhooks
    def verify_webhook(self, request: WebhookRequest) -> None:
        webhooks.verify_basic_auth(
            request.headers,
            self.config.credentials.get("webhook_user"),
            self.config.credentials.get("webhook_password"),
        )

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return webhooks.parse(body)


def _version(record: dict[str, Any]) -> str:
    """A short fingerprint of a record as read: ``update_time`` has whole seconds, so two
    versions of one second are told apart by their content."""
    raw = json.dumps(record, sort_keys=True, default=str).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _next_start(answer: Answer) -> int | None:
    """Offset paging: ``next_start`` while ``more_items_in_collection``."""
    extra = answer.body.get("additional_data") or {}
    pagination = extra.get("pagination") or {}
    if pagination.get("more_items_in_collection"):
        return int(pagination["next_start"])
    return None
