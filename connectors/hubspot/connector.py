"""The HubSpot connector: companies are customers, contacts are their contacts.

Settings (``config.settings``):

=======================  ==============================================================
host                     API base URL (default ``https://api.hubapi.com``)
request_timeout          seconds per HTTP request (default 30)
max_attempts             tries per call for failures (5xx, time-outs), default 5
backoff_base_seconds     exponential back-off base (default 0.5)
rate_limit_wait_seconds  how long a 429 without ``Retry-After`` waits (default 1: the
                         ``SECONDLY`` window; a tenth of ``TEN_SECONDLY_ROLLING``'s)
rate_limit_budget_seconds  how long one run may wait out rate limits in all (default 3600)
time_zone                the portal's time zone (IANA name; default UTC): a spent ``DAILY``
                         allowance returns at its next midnight
search_per_second        searches this connector starts per second at most (default 4:
                         HubSpot's search limit, whose answers carry no rate-limit headers
                         for the shared gate to learn from)
external_id_property     unique company property keyed by the billing id for idempotent
                         creates (batch upsert ``idProperty``; default ``crmsync_id``)
accept_signature_v1_v2   accept webhooks signed v1/v2 (no timestamp; default false)
clock_skew_ms            how far our clock may be ahead of HubSpot's; the watermark a full
                         pull hands to the next incremental pull starts this much before
                         the full pull did (default 1000)
search_lag_seconds       how long a write may take to reach HubSpot's search index
                         (default 10; 0: trust the index to have every write at once):
                         the watermark an incremental pull hands on is never later than
                         when its search began, less the clock skew and this, so a record
                         indexed late is read by the next pull (see ``cursor``)
contacts                 false: pull no contacts (companies only; default true)
contact_communications_field  the contact property (multiple checkboxes) holding the
                         communications a contact gets (billing, updates, legal); default
                         none: not synced
=======================  ==============================================================

Credentials (``config.credentials``): ``access_token`` (private app / OAuth access token),
``client_secret`` (the app's, for webhook signatures).

Calls, for N companies of which C changed and A are archived:

- full pull: the list API, 100 per page: ``ceil(N/100)`` calls (archived ones not listed;
  the final cursor starts the next incremental pull);
- incremental pull: search on ``hs_lastmodifieddate``, 200 per page, keyset-paged (never an
  offset, so the 10,000-result cap of a search never applies and a record changed during
  the pull moves ahead of the cursor instead of being skipped): ``ceil(C/200)`` calls when
  fewer than 100 records share a millisecond at page boundaries; then the archived list
  (``archived=true``, 100 per page) for deletions since the last pull: ``ceil(A/100)``, at
  least 1. With nothing changed: 2 calls (the records modified in the last
  ``search_lag_seconds`` before the previous pull are read again, in the same search page
  while they are fewer than 200).
- when more than 100 records share the boundary millisecond T (bulk updates; > 10,000 is
  handled too), the pull switches to ``hs_lastmodifieddate EQ T AND hs_object_id GT last``
  sorted by ``hs_object_id``, then resumes with ``GT T``;
- contacts: the same, on ``lastmodifieddate``; the company comes from the contact's
  ``associatedcompanyid`` property (and ``associations=companies`` on the full pull), so
  there are no extra association calls;
- ``pull_customers_by_ids``: ``ceil(ids/100)`` batch reads;
- ``push_customers``: ``ceil(updates/100)`` batch updates + ``ceil(creates/100)`` batch
  upserts on ``external_id_property``;
- ``push_contacts``: ``ceil(updates/100)`` batch updates + ``ceil(creates/100)`` batch
  creates, each new contact associated with its company in the create itself; an adopted
  contact (found by e-mail, not created) adds ``ceil(adopted/100)`` v4 association batch
  creates;
- ``find_contacts`` (before creating contacts: HubSpot keeps one contact per e-mail):
  ``ceil(creates/100)`` batch reads by ``idProperty=email``; none without creates.

Merges: since 2024 a merge makes a new record under a new id; both old ids resolve to it
and are listed in its ``hs_merged_object_ids``, and neither is listed or archived again
(before, the primary kept its id and the loser was archived). Every pull (and read by id)
that returns a record with ``hs_merged_object_ids`` reports each of those ids first, as
``deleted=True, merged_into=`` the record, so the engine re-points their links either
way; a merge webhook names the new record (``newObjectId``) and both old ids.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import (
    COMMUNICATIONS_SETTING,
    ApiUsage,
    Capabilities,
    ConnectionConfig,
    ContactPush,
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
    communications_from_crm,
    communications_to_crm,
    split_name,
    syncs_contacts,
)
from connectors.calls import (
    RATE_LIMIT_BUDGET_SECONDS,
    CallCounter,
    LocalRateGate,
    RetryPolicy,
    call_crm,
)
from connectors.errors import ConfigError, ConnectorError
from connectors.hubspot import cursor as cursors
from connectors.hubspot import mapping, webhooks
from connectors.hubspot.client import HubSpotApis, raw_call
from connectors.hubspot.config import SEARCH_LAG_SECONDS, HubSpotCredentials, HubSpotSettings
from connectors.hubspot.cursor import HubSpotCursor
from connectors.hubspot.errors import classify, describe, error_body, is_api_exception, record_error

#: a pulled record: a company or a contact
T = TypeVar("T", CrmCustomer, CrmContact)
#: anything chunked into batches
Item = TypeVar("Item")

LIST_LIMIT = 100
SEARCH_LIMIT = 200
BATCH_LIMIT = 100
#: the ``archived`` query parameter as the references write it (``?archived=false``); the
#: SDK would send a Python bool as ``True`` / ``False``
#: (https://developers.hubspot.com/docs/api-reference/latest/crm/objects/companies/get-companies)
ARCHIVED = {True: "true", False: "false"}
#: HubSpot-defined association type "Contact to company (Primary)"
#: (developers.hubspot.com/docs/guides/api/crm/associations/associations-v4, type ids)
CONTACT_TO_PRIMARY_COMPANY = 1
#: HubSpot-defined association type "Contact to company" (unlabeled: every association)
CONTACT_TO_COMPANY = 279


@dataclass(frozen=True)
class _Kind(Generic[T]):
    """What differs between pulling companies and contacts."""

    #: the SDK's basic and search APIs, built when a pull first needs them
    #: (:class:`~connectors.hubspot.client.HubSpotApis`)
    basic_api: Callable[[], Any]
    search_api: Callable[[], Any]
    modified: str  # the modification-stamp property
    properties: list[str]
    associations: list[str] | None
    build: Callable[[dict[str, Any], bool, str | None], T]
    #: the record for an id merged away into the given survivor (deleted, merged_into)
    gone: Callable[[str, str], T]

    @property
    def basic(self) -> Any:
        return self.basic_api()

    @property
    def search(self) -> Any:
        return self.search_api()

    def records(self, raw: dict[str, Any]) -> list[T]:
        """A listed record, preceded by the ids merged into it (``hs_merged_object_ids``),
        each as a deleted record merged into it: since 2024 the ids of merged records are
        never listed or archived again, so this is how a client learns where they went."""
        record = self.build(raw, False, None)
        out = [self.gone(old, record.id) for old in record.merged_from]
        out.append(record)
        return out


class Pacer:
    """Spaces calls at most ``per_second`` a second (HubSpot's search limit: "four requests
    per second per authentication token",
    https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase), so a pull
    of many search pages is not a burst of ``SECONDLY`` refusals."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def merged_ids(raw: dict[str, Any]) -> list[str]:
    """The ids in a record's ``hs_merged_object_ids`` (``;``-separated), itself excluded."""
    text = (raw.get("properties") or {}).get("hs_merged_object_ids")
    if not text:  # the usual record: nothing merged into it
        return []
    rid = str(raw.get("id"))
    return [i.strip() for i in str(text).split(";") if i.strip() and i.strip() != rid]


def _aliases(pushes: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """Every id HubSpot may name a push by (its own id, sent as the trace id or upsert id,
    and its CRM id), to the push's own id."""
    found: dict[str, str] = {}
    for own, crm_id in pushes:
        found[own] = own
        if crm_id:
            found[str(crm_id)] = own
    return found


def _batch_results(
    body: Mapping[str, Any],
    crm_ids: Mapping[str, str | None],
    aliases: Mapping[str, str],
    external_property: str | None = None,
    leftover: list[str] | None = None,
) -> dict[str, PushResult]:
    """A batch write's answer as a result per push (by its own id: billing or contact id),
    matched by the ids HubSpot names, never by position: a result by its
    ``objectWriteTraceId``, its ``id`` or (an upsert) its ``external_property``; an error of
    a 207 by the ids and trace ids of its ``context``. The ids of results that name no
    push are added to ``leftover``."""
    out: dict[str, PushResult] = {}
    for r in body.get("results") or []:
        named = [r.get("objectWriteTraceId"), r.get("id")]
        if external_property:
            named.append((r.get("properties") or {}).get(external_property))
        own = next((aliases[str(k)] for k in named if k is not None and str(k) in aliases), None)
        if own is not None:
            out[own] = PushResult(own, str(r["id"]))
        elif leftover is not None:
            leftover.append(str(r["id"]))
    for entry in body.get("errors") or []:
        error = record_error(entry)
        for key in _error_names(entry):
            own = aliases.get(key)
            if own is not None:
                out[own] = PushResult(own, crm_ids[own], error)
    return out


def _error_names(entry: Mapping[str, Any]) -> list[str]:
    """The inputs a 207 error names: the ids and trace ids of its ``context``, and its own
    ``id`` (the batch references' error schema has an optional ``id`` beside a
    ``context`` that may be empty,
    https://developers.hubspot.com/docs/api-reference/latest/crm/objects/companies/batch/update-companies)."""
    context = entry.get("context") or {}
    names = [*(context.get("ids") or []), *(context.get("objectWriteTraceId") or [])]
    if entry.get("id") is not None:
        names.append(entry["id"])
    return [str(name) for name in names]


def _refusal(exc: ConfigError) -> tuple[RecordError, bool]:
    """The record error of a batch HubSpot refused as a whole (400: a value it does not
    take; 409: a duplicate), and whether one input's value may be the cause (so splitting
    the batch finds it; a read-only property refuses every input). Re-raises ``exc`` for
    anything else: a property the portal lacks is the connection's configuration."""
    cause = exc.__cause__
    status = getattr(cause, "status", None) if cause is not None else None
    if cause is None or status not in (400, 409):
        raise exc
    data = error_body(cause)
    if data.get("subCategory") == "PROPERTY_DOESNT_EXIST":
        raise exc
    text = f"{data.get('subCategory') or ''} {data.get('message') or ''}".upper()
    kind: Any = "duplicate" if status == 409 else "validation"
    code = str(data.get("subCategory") or data.get("category") or status)
    error = RecordError(kind, code, describe(int(status), data))
    return error, not ("READ_ONLY" in text or "READ ONLY" in text)


def _with_batch(error: RecordError, size: int) -> RecordError:
    """A refused batch's error for each of its ``size`` inputs: it may name another one."""
    if size == 1:
        return error
    return RecordError(
        error.kind,
        error.code,
        f"refused with a batch of {size} (HubSpot named one of them): {error.message}",
    )


def _next_after(body: dict[str, Any]) -> str | None:
    """The paging token of the next page, if there is one."""
    after = ((body.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after else None


def _chunks(items: Sequence[Item], size: int) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class HubSpotConnector:
    """HubSpot CRM v3 through hubspot-api-client (see the module docstring)."""

    key: ClassVar[str] = "hubspot"
    capabilities: ClassVar[Capabilities] = Capabilities(
        webhooks=True,
        merges="pulls",
        contacts=True,
        field_describe=True,
        contact_push=True,
        contact_find=True,
    )
    webhook_setup: ClassVar[str] = (
        "Webhooks: in your HubSpot app's Webhooks settings, set the target URL to {url} and "
        "subscribe to company.creation, company.propertyChange (each mapped property), "
        "company.deletion, company.merge and company.restore (and contact.* for contacts); "
        "crmsync checks HubSpot's v3 signature with the app's client secret."
    )
    settings_model: ClassVar[type[HubSpotSettings]] = HubSpotSettings
    credentials_model: ClassVar[type[HubSpotCredentials]] = HubSpotCredentials

    def __init__(self, config: ConnectionConfig, gate: RateGate | None = None) -> None:
        self.config = config
        settings = config.settings
        token = config.credentials.get("access_token", "")
        if not token:
            raise ConfigError("HubSpot connection has no access_token")
        self._host = str(settings.get("host") or "https://api.hubapi.com")
        self._timeout = float(settings.get("request_timeout", 30))
        self._policy = RetryPolicy(
            attempts=int(settings.get("max_attempts", 5)),
            base_seconds=float(settings.get("backoff_base_seconds", 0.5)),
            rate_limit_budget_seconds=float(
                settings.get("rate_limit_budget_seconds", RATE_LIMIT_BUDGET_SECONDS)
            ),
        )
        self._limit_wait = float(settings.get("rate_limit_wait_seconds", 1.0))
        try:
            self._zone = ZoneInfo(str(settings.get("time_zone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"time_zone {settings.get('time_zone')!r} is not an IANA time zone name "
                "(e.g. America/New_York): the portal's daily API limit resets at its midnight"
            ) from exc
        self._usage: ApiUsage | None = None
        self._search_pace = Pacer(float(settings.get("search_per_second", 4)))
        self._skew_ms = int(settings.get("clock_skew_ms", 1000))
        self._lag_ms = round(float(settings.get("search_lag_seconds", SEARCH_LAG_SECONDS)) * 1000)
        self.external_id_property = str(settings.get("external_id_property") or "crmsync_id")
        self._accept_v1_v2 = bool(settings.get("accept_signature_v1_v2", False))
        self._gate: RateGate = gate or LocalRateGate()
        self._counter = CallCounter()
        self._apis = HubSpotApis(token, self._host)
        self._fmap = mapping.field_map(config.field_map)
        self.communications_field: str | None = settings.get(COMMUNICATIONS_SETTING) or None
        self.mapped_fields: tuple[str, ...] = tuple(self._fmap)
        self._company_props = [
            *mapping.properties_of(self._fmap),
            "hs_lastmodifieddate",
            "hs_merged_object_ids",
            self.external_id_property,
        ]
        self._companies: _Kind[CrmCustomer] = _Kind(
            lambda: self._apis.companies,
            lambda: self._apis.companies_search,
            "hs_lastmodifieddate",
            list(dict.fromkeys(self._company_props)),
            None,
            self._customer,
            lambda old, new: CrmCustomer(id=old, fields={}, deleted=True, merged_into=new),
        )
        self._contacts: _Kind[CrmContact] = _Kind(
            lambda: self._apis.contacts,
            lambda: self._apis.contacts_search,
            "lastmodifieddate",
            [
                "firstname",
                "lastname",
                "email",
                "lastmodifieddate",
                "associatedcompanyid",
                "hs_merged_object_ids",
                *([self.communications_field] if self.communications_field else []),
            ],
            ["companies"],
            self._contact,
            lambda old, new: CrmContact(
                id=old, customer_id=None, name="", email=None, deleted=True, merged_into=new
            ),
        )

    # -- plumbing ------------------------------------------------------------------------

    @property
    def api_calls(self) -> int:
        return self._counter.count

    @property
    def calls(self) -> CallCounter:
        """The calls made, with the rate-limit waits and retries among them."""
        return self._counter

    @property
    def api_usage(self) -> ApiUsage | None:
        """The portal's daily allowance as HubSpot's last answer reported it."""
        return self._usage

    @property
    def apis(self) -> HubSpotApis:
        return self._apis

    def _observe(self, headers: Mapping[str, str]) -> None:
        self._gate.observe(headers)
        usage = mapping.daily_usage(headers)
        if usage is not None:
            self._usage = usage

    def _classify(self, exc: Exception) -> ConnectorError | None:
        if is_api_exception(exc):
            headers = getattr(exc, "headers", None)
            if headers is not None:
                self._observe(headers)
        return classify(exc, limit_wait_seconds=self._limit_wait, zone=self._zone)

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
        return call_crm(
            lambda: raw_call(method, self._timeout, self._observe, **kwargs),
            classify=self._classify,
            gate=self._gate,
            counter=self._counter,
            policy=self._policy,
            crm="HubSpot",
            connection_id=self.config.connection_id,
            organisation_id=self.config.organisation_id,
            operation=_operation(method),
        )

    # -- records -------------------------------------------------------------------------

    def _customer(self, raw: dict[str, Any], deleted: bool, merged_into: str | None) -> CrmCustomer:
        props = raw.get("properties") or {}
        return CrmCustomer(
            id=str(raw["id"]),
            fields=mapping.to_fields(props, self._fmap),
            modified_at=mapping.parse_time(
                props.get("hs_lastmodifieddate") or raw.get("updatedAt")
            ),
            deleted=deleted,
            merged_into=merged_into,
            billing_id=mapping.empty_to_none(props.get(self.external_id_property)),
            merged_from=tuple(merged_ids(raw)),
        )

    def _contact(self, raw: dict[str, Any], deleted: bool, merged_into: str | None) -> CrmContact:
        props = raw.get("properties") or {}
        company = mapping.empty_to_none(props.get("associatedcompanyid"))
        assoc = ((raw.get("associations") or {}).get("companies") or {}).get("results") or []
        # the primary company is listed as "contact_to_company" (every association also as
        # "contact_to_company_unlabeled"); associatedcompanyid names it too
        primary = [a for a in assoc if a.get("type") == "contact_to_company"]
        if primary:
            company = str(primary[0]["id"])
        elif company is None and assoc:
            company = str(assoc[0]["id"])
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
        return CrmContact(
            id=str(raw["id"]),
            customer_id=company,
            name=name,
            email=mapping.empty_to_none(props.get("email")),
            modified_at=mapping.parse_time(props.get("lastmodifieddate") or raw.get("updatedAt")),
            deleted=deleted,
            merged_into=merged_into,
            merged_from=tuple(merged_ids(raw)),
            communications=(
                communications_from_crm(props.get(self.communications_field))
                if self.communications_field
                else None
            ),
        )

    # -- contract: fields ----------------------------------------------------------------

    def describe_fields(self) -> list[CrmField]:
        _, body = self._call(self._apis.properties.get_all, object_type="companies")
        fields = []
        for p in body.get("results") or []:
            meta = p.get("modificationMetadata") or {}
            fields.append(
                CrmField(
                    name=str(p["name"]),
                    label=str(p.get("label") or p["name"]),
                    type=str(p.get("type") or "string"),
                    updateable=not bool(meta.get("readOnlyValue", False))
                    and not p.get("calculated"),
                )
            )
        return fields

    def unavailable_fields(self) -> dict[str, str]:
        """Default fields whose property this portal lacks (e.g. ``address.line3`` without
        ``address3``) -> why; see :class:`connectors.base.FieldResolver`."""
        return self._resolve({f.name for f in self.describe_fields()})

    def _resolve(self, properties: set[str]) -> dict[str, str]:
        overrides = self.config.field_map
        problems: list[str] = []
        unavailable: dict[str, str] = {}
        for customer_field, prop in self._fmap.items():
            if prop == mapping.DERIVED:
                country = self._fmap.get("address.country")
                if country and country not in properties:
                    unavailable[customer_field] = f"derived from {country}, which is missing"
                continue
            if prop in properties:
                continue
            if customer_field in overrides:
                problems.append(
                    f"{customer_field} is mapped to {prop!r}, which companies do not have: "
                    f"give the property's internal name (Settings > Properties) with --map "
                    f"{customer_field}=PROPERTY, or unmap it with --map {customer_field}="
                )
            elif customer_field == "customer_name":
                problems.append(f"the company name property {prop!r} is missing (required)")
            else:
                unavailable[customer_field] = mapping.why_missing(prop)
        if self.external_id_property not in properties:
            problems.append(
                f"the external-id property {self.external_id_property!r} does not exist "
                "(required: creates are upserts keyed by it): create a single-line text "
                "company property with that internal name and 'unique values' on "
                "(Settings > Properties), or name yours with --external-id-property"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        return unavailable

    def check(self) -> None:
        unavailable = self._resolve({f.name for f in self.describe_fields()})
        if unavailable:
            raise ConfigError(
                "this portal lacks properties the connection maps: "
                + "; ".join(f"{f} ({why})" for f, why in unavailable.items())
                + ". Leave them out with --map FIELD= (connections add and set do so by "
                "themselves when they check the portal)"
            )
        field = self.communications_field
        if field:
            _, body = self._call(self._apis.properties.get_all, object_type="contacts")
            if field not in {str(p.get("name")) for p in body.get("results") or []}:
                raise ConfigError(
                    f"this portal's contacts have no property {field!r} "
                    "(contact_communications_field): name a multiple-checkbox contact "
                    "property, or leave the setting out"
                )

    # -- contract: pulls -----------------------------------------------------------------

    def pull_customers(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmCustomer]]:
        return self._pull(self._companies, cursor, full)

    def pull_contacts(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmContact]]:
        if not syncs_contacts(self.config.settings):
            return iter(())
        return self._pull(self._contacts, cursor, full)

    def _pull(self, kind: _Kind[T], cursor: str | None, full: bool) -> Iterator[Page[T]]:
        previous = HubSpotCursor.from_json(cursor) if cursor else None
        at = cursors.start(previous, full=full, now_ms=self._now_ms())
        if at.mode == "full":
            yield from self._pull_full(kind, at)
        else:
            yield from self._pull_incremental(kind, at)

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _pull_full(self, kind: _Kind[T], at: HubSpotCursor) -> Iterator[Page[T]]:
        while True:
            kwargs: dict[str, Any] = {
                "limit": LIST_LIMIT,
                "properties": kind.properties,
                "archived": ARCHIVED[False],
            }
            if at.after:
                kwargs["after"] = at.after
            if kind.associations:
                kwargs["associations"] = kind.associations
            _, body = self._call(kind.basic.get_page, **kwargs)
            records: list[T] = []
            stamps: list[tuple[int, str]] = []
            for raw in body.get("results") or []:
                built = kind.records(raw)
                records.extend(built)
                # the record's modification time is its stamp: read from the same property
                # (or updatedAt), parsed once
                if (modified := built[-1].modified_at) is not None:
                    stamps.append((mapping.ms_of(modified), built[-1].id))
            at = cursors.full_page(at, stamps, _next_after(body))
            if at.after:
                yield Page(records, at.to_json())
                continue
            yield Page(records, cursors.after_full(at, self._skew_ms).to_json())
            return

    def _search_body(self, kind: _Kind[T], at: HubSpotCursor) -> dict[str, Any]:
        groups, sort = cursors.search_filters(at, kind.modified)
        return {
            "filterGroups": groups,
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": kind.properties,
            "limit": SEARCH_LIMIT,
        }

    def _pull_incremental(self, kind: _Kind[T], at: HubSpotCursor) -> Iterator[Page[T]]:
        while at.mode in {"range", "ties"}:
            self._search_pace.wait()
            _, body = self._call(
                kind.search.do_search, public_object_search_request=self._search_body(kind, at)
            )
            results = body.get("results") or []
            more = _next_after(body) is not None
            # in a walk by id, the records returned before it began are not returned again
            seen = set(at.tie_seen) if at.mode == "ties" else set()
            records = [rec for r in results if str(r["id"]) not in seen for rec in kind.records(r)]
            merged = {loser: str(r["id"]) for r in results for loser in merged_ids(r)}
            at = cursors.merges_seen(at, merged)
            stamps = [(self._ms(kind, r), str(r["id"])) for r in results]
            at = cursors.search_page(at, stamps, more, self._now_ms())
            if at.mode == "archived":
                # the search is done: one page for its last results and the first archived page
                yield from self._pull_archived(kind, at, records)
                return
            yield Page(records, at.to_json())
        yield from self._pull_archived(kind, at, [])

    def _stamp(self, kind: _Kind[T], raw: dict[str, Any]) -> int | None:
        """A record's modification time (ms), or None when it has none."""
        properties = raw.get("properties") or {}
        return mapping.to_ms(properties.get(kind.modified) or raw.get("updatedAt"))

    def _ms(self, kind: _Kind[T], raw: dict[str, Any]) -> int:
        ms = self._stamp(kind, raw)
        return -1 if ms is None else ms

    def _pull_archived(
        self, kind: _Kind[T], at: HubSpotCursor, carry: list[T]
    ) -> Iterator[Page[T]]:
        """Records archived since the last pull (``archivedAt`` >= the archive watermark)."""
        while True:
            kwargs: dict[str, Any] = {
                "limit": LIST_LIMIT,
                "archived": ARCHIVED[True],
                "properties": [kind.modified],
            }
            if at.after:
                kwargs["after"] = at.after
            _, body = self._call(kind.basic.get_page, **kwargs)
            records, carry = list(carry), []
            deleted: list[tuple[int, str]] = []
            for r in body.get("results") or []:
                rid = str(r["id"])
                archived_ms = mapping.to_ms(r.get("archivedAt"))
                if archived_ms is None:
                    # archivedAt is optional in the objects reference (SimplePublicObject
                    # requires id, properties, createdAt, updatedAt): without it, when the
                    # record was archived is unknown, so it is reported each pull (a
                    # deletion reported again changes nothing) rather than never
                    records.append(kind.build(r, True, at.merged.get(rid)))
                    continue
                if at.archived_already(archived_ms, rid):
                    continue
                records.append(kind.build(r, True, at.merged.get(rid)))
                deleted.append((archived_ms, rid))
            at = cursors.archived_page(at, deleted, _next_after(body))
            if at.after:
                yield Page(records, at.to_json())
                continue
            after = cursors.after_archived(at, self._skew_ms, self._lag_ms)
            yield Page(records, after.to_json())
            return

    # -- contract: reads by id -----------------------------------------------------------

    def pull_customers_by_ids(self, ids: Sequence[str]) -> list[CrmCustomer]:
        found: dict[str, CrmCustomer] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), BATCH_LIMIT):
            body_in = {
                "inputs": [{"id": i} for i in chunk],
                "properties": self._companies.properties,
                # required by the batch read schema (BatchReadInputSimplePublicObjectId)
                "propertiesWithHistory": [],
            }
            _, body = self._call(
                self._apis.companies_batch.read,
                batch_read_input_simple_public_object_id=body_in,
                archived=ARCHIVED[False],
            )
            for r in body.get("results") or []:
                # an id merged away answers with the merged record (its id the new one)
                for record in self._companies.records(r):
                    if not (record.deleted and record.id in found):
                        found[record.id] = record
        return [found.get(i) or CrmCustomer(id=i, fields={}, deleted=True) for i in ids]

    # -- contract: pushes ----------------------------------------------------------------

    def push_customers(self, pushes: Sequence[CustomerPush]) -> list[PushResult]:
        results: dict[str, PushResult] = {}
        updates = [p for p in pushes if p.crm_id is not None]
        creates = [p for p in pushes if p.crm_id is None]
        for chunk in _chunks(updates, BATCH_LIMIT):
            results.update(self._push_updates(chunk))
        for chunk in _chunks(creates, BATCH_LIMIT):
            results.update(self._push_creates(chunk))
        missing = RecordError("other", "NO_RESULT", "HubSpot returned no result for this record")
        return [
            results.get(p.billing_id) or PushResult(p.billing_id, p.crm_id, missing) for p in pushes
        ]

    def _batch_write(
        self,
        method: Callable[..., Any],
        crm_ids: Mapping[str, str | None],
        aliases: Mapping[str, str],
        external_property: str | None = None,
        *,
        leftover: list[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, PushResult]:
        """One batch write, its answer a result per push (:func:`_batch_results`).

        HubSpot refuses a whole batch for one refused input when it cannot say which (a
        value it does not take, 400: an invalid e-mail; a contact create whose e-mail
        another contact has, 409 "Contact already exists. Existing ID: ..."): the batch is
        split in halves until the refused inputs are found, each a validation or duplicate
        error, and the others are written. When both halves of a batch are refused as
        well, each of its pushes gets the error (bounding the calls when many are bad). A
        read-only property refuses every push of the batch (no split); a property the
        portal lacks is a configuration error: raised."""
        try:
            _, body = self._call(method, **kwargs)
        except ConfigError as exc:
            error, splittable = _refusal(exc)
            if not splittable:
                return {own: PushResult(own, crm_id, error) for own, crm_id in crm_ids.items()}
            return self._split(method, crm_ids, aliases, external_property, kwargs, error, leftover)
        return _batch_results(body, crm_ids, aliases, external_property, leftover)

    def _split(
        self,
        method: Callable[..., Any],
        crm_ids: Mapping[str, str | None],
        aliases: Mapping[str, str],
        external_property: str | None,
        kwargs: Mapping[str, Any],
        refused: RecordError,
        leftover: list[str] | None = None,
    ) -> dict[str, PushResult]:
        """A batch HubSpot refused as a whole (see :meth:`_batch_write`); its inputs are
        matched to pushes by their trace id, or id."""
        name, batch = next((k, v) for k, v in kwargs.items() if isinstance(v, dict))
        inputs: list[dict[str, Any]] = list(batch["inputs"])
        if len(inputs) == 1:
            return {own: PushResult(own, crm_id, refused) for own, crm_id in crm_ids.items()}
        half = len(inputs) // 2
        answers: list[tuple[dict[str, str | None], dict[str, Any], Any]] = []
        for part in (inputs[:half], inputs[half:]):
            owns = {aliases[str(i.get("objectWriteTraceId") or i.get("id"))] for i in part}
            part_kwargs = {**kwargs, name: {**batch, "inputs": part}}
            part_ids = {own: crm_ids[own] for own in owns}
            try:
                _, body = self._call(method, **part_kwargs)
            except ConfigError as exc:
                answers.append((part_ids, part_kwargs, _refusal(exc)[0]))
            else:
                answers.append((part_ids, part_kwargs, body))
        if all(isinstance(a[2], RecordError) for a in answers):
            # HubSpot names one refused input of a batch (a 409's "Existing ID" is the
            # first taken e-mail's contact): the others are not told theirs
            return {
                own: PushResult(own, crm_id, _with_batch(error, len(part_ids)))
                for part_ids, _, error in answers
                for own, crm_id in part_ids.items()
            }
        out: dict[str, PushResult] = {}
        for part_ids, part_kwargs, answer in answers:
            if isinstance(answer, RecordError):
                out.update(
                    self._split(
                        method, part_ids, aliases, external_property, part_kwargs, answer, leftover
                    )
                )
            else:
                out.update(_batch_results(answer, part_ids, aliases, external_property, leftover))
        return out

    def _push_updates(self, chunk: Sequence[CustomerPush]) -> dict[str, PushResult]:
        inputs = []
        for p in chunk:
            properties = mapping.to_properties(p.fields, self._fmap)
            if p.write_billing_id:
                properties[self.external_id_property] = p.billing_id
            # results are matched by this trace id: an id the CRM merged away since answers
            # with the merged record, under its new id
            inputs.append(
                {"id": str(p.crm_id), "objectWriteTraceId": p.billing_id, "properties": properties}
            )
        return self._batch_write(
            self._apis.companies_batch.update,
            {p.billing_id: p.crm_id for p in chunk},
            _aliases((p.billing_id, p.crm_id) for p in chunk),
            batch_input_simple_public_object_batch_input={"inputs": inputs},
        )

    def _push_creates(self, chunk: Sequence[CustomerPush]) -> dict[str, PushResult]:
        prop = self.external_id_property
        # Results are matched by the trace id, or the id property's value: the upsert
        # reference documents ``objectWriteTraceId`` on inputs and results but shows an
        # empty ``properties`` on results, so the value is also written as a property
        # (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/companies/batch/upsert-companies)
        inputs = [
            {
                "idProperty": prop,
                "id": p.billing_id,
                "objectWriteTraceId": p.billing_id,
                "properties": {
                    **mapping.to_properties(p.fields, self._fmap),
                    prop: p.billing_id,
                },
            }
            for p in chunk
        ]
        leftover: list[str] = []
        results = self._batch_write(
            self._apis.companies_batch.upsert,
            {p.billing_id: None for p in chunk},
            _aliases((p.billing_id, None) for p in chunk),
            prop,
            leftover=leftover,
            batch_input_simple_public_object_batch_input_upsert={"inputs": inputs},
        )
        unnamed = [p.billing_id for p in chunk if p.billing_id not in results]
        if unnamed and leftover:
            found = self._read_back(self._apis.companies_batch.read, prop, unnamed, leftover)
            results.update({own: PushResult(own, crm_id) for own, crm_id in found.items()})
        return results

    def _read_back(
        self, read: Callable[..., Any], id_property: str, values: Sequence[str], written: list[str]
    ) -> dict[str, str]:
        """value -> id of the records written by a batch whose results named neither the
        trace id nor the id property (both optional on results: the upsert reference shows
        ``"properties": {}``, https://developers.hubspot.com/docs/api-reference/latest/crm/objects/companies/batch/upsert-companies):
        one batch read by ``id_property``, a record counted only when the batch's own
        results hold its id, so a refused input's older record is never taken for it."""
        body_in = {
            "inputs": [{"id": v} for v in values],
            "idProperty": id_property,
            "properties": [id_property],
            "propertiesWithHistory": [],
        }
        _, body = self._call(
            read, batch_read_input_simple_public_object_id=body_in, archived=ARCHIVED[False]
        )
        # HubSpot keeps one contact per e-mail, in any case: e-mails compare folded
        fold: Callable[[str], str] = str.casefold if id_property == "email" else str
        wanted = {fold(v): v for v in values}
        found: dict[str, str] = {}
        for r in body.get("results") or []:
            value = fold(str((r.get("properties") or {}).get(id_property) or ""))
            if value in wanted and str(r["id"]) in written:
                found[wanted[value]] = str(r["id"])
        return found

    # -- contacts written from the billing side -------------------------------------------

    def push_contacts(self, pushes: Sequence[ContactPush]) -> list[PushResult]:
        """Billing-side contacts: updates by batch update, creates by batch create with
        each input's ``associations`` naming its company (the "Create contacts" batch
        reference: ``inputs[].associations[].to.id`` and ``types``), so a new contact and
        its association cost one call per 100. Results are matched by
        ``objectWriteTraceId`` (the billing contact id), never by position."""
        results: dict[str, PushResult] = {}
        updates = [p for p in pushes if p.crm_id and p.fields]
        creates = [p for p in pushes if not p.crm_id]
        for chunk in _chunks(updates, BATCH_LIMIT):
            inputs: list[dict[str, Any]] = [
                {
                    "id": str(p.crm_id),
                    "objectWriteTraceId": p.contact_id,
                    "properties": self._contact_properties(p.fields),
                }
                for p in chunk
            ]
            results.update(
                self._batch_write(
                    self._apis.contacts_batch.update,
                    {p.contact_id: p.crm_id for p in chunk},
                    _aliases((p.contact_id, p.crm_id) for p in chunk),
                    batch_input_simple_public_object_batch_input={"inputs": inputs},
                )
            )
        for chunk in _chunks(creates, BATCH_LIMIT):
            inputs = [
                {
                    "objectWriteTraceId": p.contact_id,
                    "properties": self._contact_properties(p.fields),
                    "associations": [
                        {
                            "to": {"id": p.account_id},
                            "types": [
                                {
                                    "associationCategory": "HUBSPOT_DEFINED",
                                    "associationTypeId": CONTACT_TO_PRIMARY_COMPANY,
                                }
                            ],
                        }
                    ],
                }
                for p in chunk
            ]
            leftover: list[str] = []
            created = self._batch_write(
                self._apis.contacts_batch.create,
                {p.contact_id: None for p in chunk},
                _aliases((p.contact_id, None) for p in chunk),
                leftover=leftover,
                batch_input_simple_public_object_batch_input_for_create={"inputs": inputs},
            )
            # results that do not echo the trace id are the contacts' by their e-mail
            by_email = {
                str(i["properties"]["email"]): str(i["objectWriteTraceId"])
                for i in inputs
                if i["objectWriteTraceId"] not in created and i["properties"].get("email")
            }
            if by_email and leftover:
                found = self._read_back(
                    self._apis.contacts_batch.read, "email", list(by_email), leftover
                )
                for email, crm_id in found.items():
                    own = by_email[email]
                    created[own] = PushResult(own, crm_id)
            results.update(created)
        adopted = [p for p in pushes if p.crm_id and p.associate]
        for p in adopted:
            if not p.fields:  # only the association to write
                results[p.contact_id] = PushResult(p.contact_id, p.crm_id)
        for chunk in _chunks([p for p in adopted if results[p.contact_id].ok], BATCH_LIMIT):
            results.update(self._associate(chunk, results))
        missing = RecordError("other", "NO_RESULT", "HubSpot returned no result for this contact")
        return [
            results.get(p.contact_id) or PushResult(p.contact_id, p.crm_id, missing) for p in pushes
        ]

    def _associate(
        self, chunk: Sequence[ContactPush], results: Mapping[str, PushResult]
    ) -> dict[str, PushResult]:
        """Adopted contacts associated with their companies: one v4 batch create per 100
        (``POST /crm/v4/associations/contacts/companies/batch/create``). A contact may be
        associated with many companies; the company becomes its primary one only when it
        has none (type 1 with 279), else the association is unlabeled (279) and the
        contact keeps its primary company
        (developers.hubspot.com/docs/guides/api/crm/associations/associations-v4)."""
        inputs = []
        for p in chunk:
            types = [CONTACT_TO_COMPANY]
            if p.associate == "primary":
                types.insert(0, CONTACT_TO_PRIMARY_COMPANY)
            inputs.append(
                {
                    "from": {"id": str(results[p.contact_id].crm_id)},
                    "to": {"id": p.account_id},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}
                        for t in types
                    ],
                }
            )
        try:
            _, body = self._call(
                self._apis.associations.create,
                from_object_type="contacts",
                to_object_type="companies",
                batch_input_public_association_multi_post={"inputs": inputs},
            )
        except ConfigError as exc:
            error, _ = _refusal(exc)
            return {p.contact_id: PushResult(p.contact_id, p.crm_id, error) for p in chunk}
        out: dict[str, PushResult] = {}
        for entry in body.get("errors") or []:
            error = record_error(entry)
            named = {str(v) for values in (entry.get("context") or {}).values() for v in values}
            if entry.get("id") is not None:
                named.add(str(entry["id"]))
            for p in chunk:
                if {str(results[p.contact_id].crm_id), p.account_id} & named:
                    out[p.contact_id] = PushResult(p.contact_id, p.crm_id, error)
        return out

    def find_contacts(self, emails: Sequence[str]) -> list[CrmContact]:
        """The contacts holding ``emails`` (:class:`connectors.base.ContactFinder`): one
        batch read by ``idProperty=email`` per 100; e-mails no contact holds are one grouped
        207 ``OBJECT_NOT_FOUND`` error, left out. Batch read names no associations: the
        primary company is ``associatedcompanyid``."""
        found: dict[str, CrmContact] = {}
        unique = list({e.strip().casefold(): e.strip() for e in emails if e.strip()}.values())
        for chunk in _chunks(unique, BATCH_LIMIT):
            body_in = {
                "inputs": [{"id": e} for e in chunk],
                "idProperty": "email",
                "properties": self._contacts.properties,
                "propertiesWithHistory": [],
            }
            _, body = self._call(
                self._apis.contacts_batch.read,
                batch_read_input_simple_public_object_id=body_in,
                archived=ARCHIVED[False],
            )
            for r in body.get("results") or []:
                for record in self._contacts.records(r):
                    if not record.deleted and record.email:
                        found[record.id] = record
        return list(found.values())

    def _contact_properties(self, fields: Mapping[str, str | None]) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        if "name" in fields:
            first, last = split_name(fields["name"] or "")
            properties["firstname"], properties["lastname"] = first or "", last
        if "email" in fields:
            properties["email"] = fields["email"] or ""
        if "communications" in fields and self.communications_field:
            properties[self.communications_field] = (
                communications_to_crm(fields["communications"]) or ""
            )
        return properties

    # -- contract: webhooks --------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        webhooks.verify(
            request,
            self.config.credentials.get("client_secret", ""),
            accept_v1_v2=self._accept_v1_v2,
        )

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return webhooks.parse(body)


def _operation(method: Callable[..., Any]) -> str:
    """A call's name for metrics: the SDK's API class and method (``BatchApi.upsert``)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "call")
    return f"{type(owner).__name__}.{name}" if owner is not None else name
