"""The Salesforce connector: Accounts as customers, Contacts as contacts.

``settings`` (non-secret):

    instance_url          https://yourorg.my.salesforce.com (required unless token_url is set
                          and the OAuth answer names the instance)
    api_version           REST API version, default "59.0" (collections upsert needs >= 46)
    ca_bundle             a CA file to trust (the sandbox's self-signed certificate)
    external_id_field     the Account external-ID field holding the billing customer id,
                          default "crmsync_id__c" (must be External ID and Unique)
    organization_id       the org id Outbound Messages must name
    token_url             OAuth token endpoint, default instance_url + /services/oauth2/token
    request_timeout       seconds per HTTP request, default 60
    max_attempts          tries per call for failures (5xx, time-outs), default 5
    backoff_base_seconds  exponential back-off base, default 0.5
    limit_wait_seconds    how long everyone waits after the concurrent-request limit,
                          default 1
    daily_limit_recheck_seconds  how long the connection pauses when the org's rolling
                          24-hour allowance is spent before it tries again, default 1800
    rate_limit_budget_seconds  how long one run may wait out rate limits in all, default 3600
    lock_retries          extra tries for records refused with UNABLE_TO_LOCK_ROW, default 3
    overlap_seconds       incremental pulls re-read this window before the watermark
                          (at-least-once for late-committed records), default 0
    contacts              false: pull no Contacts (Accounts only), default true
    contact_communications_field  the Contact multi-select picklist holding the
                          communications a contact gets (billing, updates, legal); default
                          none: not synced

``credentials`` (secret): access_token, client_id, client_secret, refresh_token,
webhook_secret.

Calls: a pull of N records costs ceil(N / 2000) requests (queryAll, batchSize=2000,
following ``nextRecordsUrl``); an incremental pull with nothing changed costs one; a read of
N records by id costs ceil(N / 200), the records merged into them included (a webhook's
read: the losers of a merge ride in the same queryAll as their master); a push of
M records costs ceil(M / 200) per kind (updates, creates) plus retries; so does a push of
M contacts (``POST`` / ``PATCH /composite/sobjects``, ``Contact.AccountId`` the account).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

from simple_salesforce.exceptions import SalesforceMalformedRequest

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
from connectors.salesforce import webhooks
from connectors.salesforce.client import (
    ClientSettings,
    SalesforceClient,
    api_usage,
    make_session,
)
from connectors.salesforce.config import SalesforceCredentials, SalesforceSettings
from connectors.salesforce.errors import classify, record_error
from connectors.salesforce.mapping import (
    AccountMapping,
    build_mapping,
    field_map_with,
    split_street,
    why_missing,
)

T = TypeVar("T")

PAGE_SIZE = 2000  # Salesforce's largest query batch
BATCH_SIZE = 200  # sObject Collections limit
IDS_PER_QUERY = 200
#: ids read at the watermark millisecond that a cursor remembers (beyond it: keyset)
SEEN_MAX = 300  # ids per "WHERE Id IN (...)": keeps the URL well under 16 KB
SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted", "MasterRecordId")
CONTACT_FIELDS = (
    "Id",
    "AccountId",
    "FirstName",
    "LastName",
    "Email",
    "SystemModstamp",
    "IsDeleted",
)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _contact(r: dict[str, Any], communications_field: str | None = None) -> CrmContact:
    stamp = r.get("SystemModstamp")
    return CrmContact(
        id=r["Id"],
        customer_id=r.get("AccountId"),
        name=" ".join(p for p in (r.get("FirstName"), r.get("LastName")) if p),
        email=r.get("Email") or None,
        modified_at=datetime.fromisoformat(stamp) if stamp else None,
        deleted=bool(r.get("IsDeleted")),
        communications=(
            communications_from_crm(r.get(communications_field)) if communications_field else None
        ),
    )


def _contact_values(fields: Mapping[str, str | None], communications_field: str | None) -> Any:
    """Contact field values for a push: the name split into FirstName / LastName
    (LastName is required), the e-mail, the communications as a multi-select value."""
    values: dict[str, Any] = {}
    if "name" in fields:
        first, last = split_name(fields["name"] or "")
        values["FirstName"], values["LastName"] = first, last
    if "email" in fields:
        values["Email"] = fields["email"]
    if "communications" in fields and communications_field:
        values[communications_field] = communications_to_crm(fields["communications"])
    return values


def to18(record_id: str) -> str:
    """The 18-character form of a 15-character Salesforce id (others unchanged)."""
    if len(record_id) != 15:
        return record_id
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(record_id[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _ALPHABET[bits]
    return record_id + suffix


def _soql_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "'" + escaped.replace("\r", "\\r").replace("\t", "\\t") + "'"


def _soql_datetime(stamp: datetime, *, whole_seconds: bool = False) -> str:
    """A SOQL dateTime literal, UTC, with milliseconds, or in whole seconds (floored).

    The WHERE reference documents only whole seconds (``YYYY-MM-DDThh:mm:ssZ``, ``±hh:mm``
    offsets: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_dateformats.htm);
    Salesforce also takes a fraction (tap-salesforce sends microseconds), which pins a
    SystemModstamp to its millisecond. The connector uses it until a server refuses it,
    then whole seconds (:meth:`SalesforceConnector._pull`)."""
    stamp = stamp.astimezone(UTC)
    if whole_seconds:
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


#: whether a record of a resumed pull was read before; None: neither it nor any after it
ReadBefore = Callable[[dict[str, Any]], bool | None]


class SalesforceConnector:
    """Implements :class:`connectors.base.Connector` with simple-salesforce."""

    key: ClassVar[str] = "salesforce"
    capabilities: ClassVar[Capabilities] = Capabilities(
        webhooks=True, merges="pulls", contacts=True, field_describe=True, contact_push=True
    )
    webhook_setup: ClassVar[str] = (
        "Outbound Message URL: {url}?secret=WEBHOOK_SECRET (Setup → Outbound Messages, on "
        "Account with the mapped fields, fired by a workflow rule or flow on create and edit; "
        "WEBHOOK_SECRET is the connection's webhook_secret credential)."
    )
    settings_model: ClassVar[type[SalesforceSettings]] = SalesforceSettings
    credentials_model: ClassVar[type[SalesforceCredentials]] = SalesforceCredentials

    def __init__(self, config: ConnectionConfig, gate: RateGate | None = None) -> None:
        settings = config.settings
        self.config = config
        self._gate: RateGate = gate or LocalRateGate()
        self._counter = CallCounter()
        self._policy = RetryPolicy(
            attempts=int(settings.get("max_attempts", 5)),
            base_seconds=float(settings.get("backoff_base_seconds", 0.5)),
            rate_limit_budget_seconds=float(
                settings.get("rate_limit_budget_seconds", RATE_LIMIT_BUDGET_SECONDS)
            ),
        )
        self._limit_wait = float(settings.get("limit_wait_seconds", 1.0))
        self._recheck = float(settings.get("daily_limit_recheck_seconds", 1800.0))
        self._lock_retries = int(settings.get("lock_retries", 3))
        self._overlap = float(settings.get("overlap_seconds", 0.0))
        #: whole-second dateTime literals: the server refused a millisecond one
        self._whole_seconds = False
        self.external_id_field = str(settings.get("external_id_field", "crmsync_id__c"))
        self.communications_field: str | None = settings.get(COMMUNICATIONS_SETTING) or None
        self._usage: ApiUsage | None = None
        self._mapping: AccountMapping = build_mapping(config.field_map)
        self._to_customer = self._mapping.to_customer()
        self.mapped_fields: tuple[str, ...] = self._mapping.mapped_fields
        self._account_fields = tuple(
            dict.fromkeys([*SYSTEM_FIELDS, self.external_id_field, *self._mapping.sf_fields])
        )
        client_settings = ClientSettings.from_settings(settings)
        self._timeout = client_settings.request_timeout
        self._client = SalesforceClient(
            client_settings,
            config.credentials,
            make_session(client_settings.ca_bundle, self._observe),
            self._counter,
        )

    def close(self) -> None:
        """Close the HTTP connections (the connector stays usable: they reopen on demand)."""
        self._client.session.close()

    # -- counting -----------------------------------------------------------------------
    @property
    def api_calls(self) -> int:
        """HTTP requests this instance made (API calls, retries and token requests)."""
        return self._counter.count

    @api_calls.setter
    def api_calls(self, value: int) -> None:
        self._counter.count = value

    @property
    def calls(self) -> CallCounter:
        """The calls made, with the rate-limit waits and retries among them."""
        return self._counter

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's rolling 24-hour allowance as the last ``Sforce-Limit-Info`` said."""
        return self._usage

    def _observe(self, headers: Mapping[str, str]) -> None:
        self._gate.observe(headers)
        usage = api_usage(headers)
        if usage is not None:
            self._usage = usage

    # -- the one way to call Salesforce ------------------------------------------------
    def _call(self, request: Callable[[], T], operation: str) -> T:
        return call_crm(
            request,
            classify=lambda exc: classify(
                exc, limit_wait_seconds=self._limit_wait, recheck_seconds=self._recheck
            ),
            gate=self._gate,
            counter=self._counter,
            policy=self._policy,
            refresh=self._client.refresh if self._client.can_refresh else None,
            crm="Salesforce",
            connection_id=self.config.connection_id,
            organisation_id=self.config.organisation_id,
            operation=operation,
        )

    def _restful(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        # the operation is the method and the resource, never a record id
        return self._call(
            lambda: self._client.sf().restful(path, method=method, timeout=self._timeout, **kwargs),
            f"{method.lower()} {path.split('/')[0]}",
        )

    # -- describe / check ---------------------------------------------------------------
    def describe_fields(self) -> list[CrmField]:
        described = self._restful("sobjects/Account/describe/")
        return [
            CrmField(
                name=str(f["name"]),
                label=str(f.get("label") or f["name"]),
                type=str(f.get("type") or "string"),
                updateable=bool(f.get("updateable", True)),
            )
            for f in (described or {}).get("fields", [])
        ]

    def _described(self) -> dict[str, dict[str, Any]]:
        described = self._restful("sobjects/Account/describe/") or {}
        return {str(f["name"]).lower(): f for f in described.get("fields", [])}

    def unavailable_fields(self) -> dict[str, str]:
        """Default fields this org's Account lacks (e.g. ``currency`` without multi-currency)
        -> why; see :class:`connectors.base.FieldResolver`."""
        return self._resolve(self._described())

    def _resolve(self, fields: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        overrides = self.config.field_map
        problems: list[str] = []
        unavailable: dict[str, str] = {}
        for customer_field, sf_field in field_map_with(overrides).items():
            described = fields.get(sf_field.lower())
            if described is not None and described["name"] != sf_field:
                # SOQL takes any case, but records come back under the API name: a map in
                # another case would read None for every record, silently
                problems.append(
                    f"{customer_field} is mapped to {sf_field}: its API name is "
                    f"{described['name']} (records use it, case and all): "
                    f"--map {customer_field}={described['name']}"
                )
                continue
            if described is not None:
                continue
            if customer_field in overrides:
                problems.append(
                    f"{customer_field} is mapped to {sf_field}, which Account does not have: "
                    f"give the field's API name (Setup > Object Manager > Account > Fields) "
                    f"with --map {customer_field}=FIELD, or unmap it with --map {customer_field}="
                )
            elif customer_field == "customer_name":
                problems.append(
                    f"the account name field {sf_field} is missing (a required field): "
                    "check the integration user's field-level security on Account"
                )
            else:
                unavailable[customer_field] = why_missing(sf_field)
        ext = self.external_id_field
        found = fields.get(ext.lower())
        if found is not None and found["name"] != ext:
            problems.append(
                f"the external-id field is {ext}: its API name is {found['name']} (records "
                f"use it, case and all): --external-id-field {found['name']}"
            )
        elif found is None:
            problems.append(
                f"the external-id field Account.{ext} does not exist (required: creates are "
                f"upserts keyed by it): create a Text(255) custom field {ext} on Account "
                "marked External ID and Unique, or name yours with --external-id-field"
            )
        elif not found.get("externalId"):
            problems.append(
                f"Account.{ext} must be an External ID field (creates are upserts keyed by "
                "it): tick External ID (and Unique) on the field in Setup"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        return unavailable

    def check(self) -> None:
        unavailable = self._resolve(self._described())
        if unavailable:
            raise ConfigError(
                "this org's Account lacks fields the connection maps: "
                + "; ".join(f"{f} ({why})" for f, why in unavailable.items())
                + ". Leave them out with --map FIELD= (connections add and set do so by "
                "themselves when they check the org)"
            )
        self._check_communications_field()

    def _check_communications_field(self) -> None:
        """The Contact field named for communications exists (one describe call, only when
        one is named)."""
        field = self.communications_field
        if not field:
            return
        described = self._restful("sobjects/Contact/describe/") or {}
        names = {str(f["name"]).lower() for f in described.get("fields", [])}
        if field.lower() not in names:
            raise ConfigError(
                f"this org's Contact has no field {field!r} (contact_communications_field): "
                "name a multi-select picklist of Contact, or leave the setting out"
            )

    # -- pulls ---------------------------------------------------------------------------
    def _query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """queryAll ``soql``, one list of raw records per request, following nextRecordsUrl."""
        headers = {"Sforce-Query-Options": f"batchSize={PAGE_SIZE}"}
        result = self._call(
            lambda: self._client.sf().query(
                soql, include_deleted=True, headers=headers, timeout=self._timeout
            ),
            "query",
        )
        while True:
            yield result["records"]
            if result.get("done", True) or not result.get("nextRecordsUrl"):
                return
            url = str(result["nextRecordsUrl"])
            result = self._call(
                lambda url=url: self._client.sf().query_more(  # type: ignore[misc]
                    url, identifier_is_url=True, headers=headers, timeout=self._timeout
                ),
                "query_more",
            )

    def _resume(self, cursor: str | None, *, full: bool) -> tuple[str, ReadBefore | None]:
        """The WHERE clause a pull resumes from and, when the query cannot say it, which of
        its records were read before (left out by :meth:`_paged`)."""
        if not cursor:
            return "", None
        try:
            state = json.loads(cursor)
            stamp = datetime.fromisoformat(state["stamp"])
            last_id = str(state["id"])
            seen = [str(i) for i in state.get("seen", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a Salesforce pull cursor: {cursor!r}") from exc
        if not full and self._overlap > 0:
            since = stamp - timedelta(seconds=self._overlap)
            return f" WHERE SystemModstamp >= {_soql_datetime(since, whole_seconds=True)}", None
        complete = bool(seen) and len(seen) <= SEEN_MAX
        if self._whole_seconds:
            # the watermark's second again; what of it was read is left out here, exactly
            # as the millisecond clauses below leave it out
            unread = set(seen)

            def read_before(record: dict[str, Any]) -> bool | None:
                at = datetime.fromisoformat(record["SystemModstamp"])
                if at != stamp:
                    return True if at < stamp else None
                return record["Id"] in unread if complete else str(record["Id"]) <= last_id

            second = _soql_datetime(stamp, whole_seconds=True)
            return f" WHERE SystemModstamp >= {second}", read_before
        at = _soql_datetime(stamp)
        if complete:
            # Records saved later in the watermark's millisecond may sort before the last
            # id read, so read the whole millisecond again less the ids already read
            # (CRM_API_NOTES: ">= with de-duplication by Id at the boundary").
            ids = ", ".join(_soql_string(i) for i in seen)
            return (
                f" WHERE (SystemModstamp > {at} OR (SystemModstamp = {at} AND Id NOT IN ({ids})))"
            ), None
        # More records in one millisecond than fit in a query: keyset on (stamp, Id).
        return (
            f" WHERE (SystemModstamp > {at} OR "
            f"(SystemModstamp = {at} AND Id > {_soql_string(last_id)}))"
        ), None

    def _pull(
        self, select: str, cursor: str | None, full: bool, convert: Callable[[dict[str, Any]], T]
    ) -> Iterator[Page[T]]:
        """Pages of ``select`` from the cursor on, ordered by (SystemModstamp, Id). A server
        that refuses the millisecond literal (only whole seconds are documented) gets whole
        seconds from then on: one refused call per connector."""
        while True:
            where, read_before = self._resume(cursor, full=full)
            soql = f"{select}{where} ORDER BY SystemModstamp ASC, Id ASC"
            pages = self._paged(soql, cursor, convert, read_before)
            try:
                first = next(pages, None)
            except ConfigError as exc:
                refused = isinstance(exc.__cause__, SalesforceMalformedRequest)
                if not (refused and where and not self._whole_seconds):
                    raise
                self._whole_seconds = True
                continue
            if first is not None:
                yield first
                yield from pages
            return

    def _paged(
        self,
        soql: str,
        cursor: str | None,
        convert: Callable[[dict[str, Any]], T],
        read_before: ReadBefore | None = None,
    ) -> Iterator[Page[T]]:
        """queryAll pages, each with the cursor after it: the last (SystemModstamp, Id) read
        and every id read at that SystemModstamp (carried across pages). Records
        ``read_before`` are left out, up to the first past the resumed watermark (they come
        in order)."""
        seen: list[str] = []
        stamp: str | None = None
        if cursor:
            state = json.loads(cursor)
            stamp, seen = state.get("stamp"), list(state.get("seen", []))
        for raw in self._query_pages(soql):
            if read_before is not None:
                kept: list[dict[str, Any]] = []
                for i, record in enumerate(raw):
                    before = read_before(record)
                    if before is None:
                        kept.extend(raw[i:])
                        read_before = None
                        break
                    if not before:
                        kept.append(record)
                raw = kept
            for record in raw:
                if record["SystemModstamp"] != stamp:
                    stamp, seen = record["SystemModstamp"], []
                seen.append(record["Id"])
            page_cursor = (
                json.dumps({"stamp": stamp, "id": raw[-1]["Id"], "seen": seen[-SEEN_MAX - 1 :]})
                if raw
                else cursor
            )
            yield Page([convert(r) for r in raw], page_cursor)

    def pull_customers(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmCustomer]]:
        select = f"SELECT {', '.join(self._account_fields)} FROM Account"
        yield from self._pull(select, cursor, full, self._customer)

    def _customer(self, raw: dict[str, Any]) -> CrmCustomer:
        stamp = raw.get("SystemModstamp")
        return CrmCustomer(
            id=raw["Id"],
            fields=self._to_customer(raw),
            modified_at=datetime.fromisoformat(stamp) if stamp else None,
            deleted=bool(raw.get("IsDeleted")),
            merged_into=raw.get("MasterRecordId"),
            billing_id=raw.get(self.external_id_field) or None,
        )

    def pull_contacts(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmContact]]:
        if not syncs_contacts(self.config.settings):
            return
        field = self.communications_field
        fields = [*CONTACT_FIELDS, field] if field else list(CONTACT_FIELDS)
        select = f"SELECT {', '.join(fields)} FROM Contact"
        yield from self._pull(select, cursor, full, lambda r: _contact(r, field))

    def pull_customers_by_ids(self, ids: Sequence[str]) -> list[CrmCustomer]:
        return self._read_by_ids(ids, merged=False)

    def pull_customers_with_merged(self, ids: Sequence[str]) -> list[CrmCustomer]:
        """The named accounts, then the accounts merged away into them (see
        :class:`connectors.base.MergeReader`), at the calls of ``pull_customers_by_ids``."""
        return self._read_by_ids(ids, merged=True)

    def _read_by_ids(self, ids: Sequence[str], *, merged: bool) -> list[CrmCustomer]:
        wanted = [to18(i) for i in ids]
        found: dict[str, CrmCustomer] = {}
        unique = list(dict.fromkeys(wanted))
        for start in range(0, len(unique), IDS_PER_QUERY):
            listed = ", ".join(_soql_string(i) for i in unique[start : start + IDS_PER_QUERY])
            where = f"Id IN ({listed})"
            if merged:
                # A merge's losers are deleted with MasterRecordId = the master, and no
                # Outbound Message fires for a delete ("Triggers and Merge Statements",
                # Apex guide); queryAll identifies "records that have been deleted because
                # of a merge" by their masterRecordId (queryAll(), SOAP API guide). Asked
                # in the same query as the named records, they cost no call.
                where += f" OR (MasterRecordId IN ({listed}) AND IsDeleted = true)"
            soql = f"SELECT {', '.join(self._account_fields)} FROM Account WHERE {where}"
            for raw in self._query_pages(soql):
                for r in raw:
                    found[r["Id"]] = self._customer(r)
        named = {i: found.get(i) or CrmCustomer(id=i, fields={}, deleted=True) for i in unique}
        merged_away = [record for i, record in found.items() if i not in named]
        return [named[i] for i in wanted] + merged_away

    # -- push ----------------------------------------------------------------------------
    def push_customers(self, pushes: Sequence[CustomerPush]) -> list[PushResult]:
        results: dict[int, PushResult] = {}
        values = self._values_for(pushes)
        pending = list(range(len(pushes)))
        for attempt in range(self._lock_retries + 1):
            retry: list[int] = []
            updates = [i for i in pending if pushes[i].crm_id]
            creates = [i for i in pending if not pushes[i].crm_id]
            for start in range(0, len(updates), BATCH_SIZE):
                retry += self._push_batch(
                    pushes, values, updates[start : start + BATCH_SIZE], results, create=False
                )
            for start in range(0, len(creates), BATCH_SIZE):
                retry += self._push_batch(
                    pushes, values, creates[start : start + BATCH_SIZE], results, create=True
                )
            if not retry:
                break
            pending = retry
            if attempt < self._lock_retries:
                time.sleep(self._policy.backoff(attempt))
        return [results[i] for i in range(len(pushes))]

    def _values_for(self, pushes: Sequence[CustomerPush]) -> list[dict[str, Any]]:
        """Account values per push; address lines that share a Salesforce field with lines
        not being pushed are completed from the CRM's current value (one extra read)."""
        need = [p.crm_id for p in pushes if p.crm_id and self._mapping.missing_lines(p.fields)]
        current: dict[str, CrmCustomer] = {}
        if need:
            current = {c.id: c for c in self.pull_customers_by_ids([i for i in need if i])}
        out = []
        for push in pushes:
            fields = dict(push.fields)
            groups = self._mapping.missing_lines(fields)
            if groups:
                have = current.get(to18(push.crm_id)) if push.crm_id else None
                for group in groups:
                    for _, customer_field in group.lines:
                        if customer_field not in fields:
                            fields[customer_field] = (
                                have.fields.get(customer_field) if have else None
                            )
            out.append(self._mapping.to_salesforce(fields))
        return out

    def _push_batch(
        self,
        pushes: Sequence[CustomerPush],
        values: list[dict[str, Any]],
        batch: list[int],
        results: dict[int, PushResult],
        *,
        create: bool,
    ) -> list[int]:
        """Send one sObject Collections request; record results; the lock-refused indexes."""
        records = []
        for i in batch:
            record: dict[str, Any] = {"attributes": {"type": "Account"}, **values[i]}
            if create:
                record[self.external_id_field] = pushes[i].billing_id
            else:
                record["id"] = pushes[i].crm_id
                if pushes[i].write_billing_id:
                    record[self.external_id_field] = pushes[i].billing_id
            records.append(record)
        body = {"allOrNone": False, "records": records}
        if create:
            path = f"composite/sobjects/Account/{quote(self.external_id_field, safe='')}"
        else:
            path = "composite/sobjects"
        answer = self._restful(path, method="PATCH", json=body)
        if not isinstance(answer, list) or len(answer) != len(batch):
            raise ConnectorError(
                f"Salesforce answered {len(answer) if isinstance(answer, list) else answer!r} "
                f"results for {len(batch)} records"
            )
        # SaveResults come back in request order (documented); a result that names an id is
        # matched by that id, so a reordering would show instead of mis-attributing results.
        by_crm_id = {to18(pushes[i].crm_id or ""): i for i in batch if pushes[i].crm_id}
        retry = []
        for position, result in enumerate(answer):
            index = batch[position]
            result_id = result.get("id")
            if not create and result_id and result_id in by_crm_id:
                index = by_crm_id[result_id]
            push = pushes[index]
            if result.get("success"):
                results[index] = PushResult(push.billing_id, result_id or push.crm_id)
                continue
            error: RecordError = record_error(result.get("errors"))
            results[index] = PushResult(push.billing_id, push.crm_id, error)
            if error.code == "UNABLE_TO_LOCK_ROW":
                retry.append(index)
        return retry

    def push_contacts(self, pushes: Sequence[ContactPush]) -> list[PushResult]:
        """Contacts in sObject Collections of 200: creates by ``POST /composite/sobjects``
        with ``AccountId``, updates by ``PATCH /composite/sobjects`` (developer.salesforce.com,
        "Create Records Using sObject Collections" / "Update Records ..."). SaveResults come
        back in request order (documented)."""
        results: dict[str, PushResult] = {}
        updates = [p for p in pushes if p.crm_id]
        creates = [p for p in pushes if not p.crm_id]
        for kind, method in ((updates, "PATCH"), (creates, "POST")):
            for start in range(0, len(kind), BATCH_SIZE):
                batch = kind[start : start + BATCH_SIZE]
                records = []
                for push in batch:
                    record: dict[str, Any] = {
                        "attributes": {"type": "Contact"},
                        **_contact_values(push.fields, self.communications_field),
                    }
                    if push.crm_id:
                        record["id"] = push.crm_id
                    else:
                        record["AccountId"] = push.account_id
                    records.append(record)
                answer = self._restful(
                    "composite/sobjects",
                    method=method,
                    json={"allOrNone": False, "records": records},
                )
                if not isinstance(answer, list) or len(answer) != len(batch):
                    raise ConnectorError(
                        f"Salesforce answered {answer!r:.200} for {len(batch)} contacts"
                    )
                for push, result in zip(batch, answer, strict=True):
                    if result.get("success"):
                        crm_id = result.get("id") or push.crm_id
                        results[push.contact_id] = PushResult(push.contact_id, crm_id)
                    else:
                        error = record_error(result.get("errors"))
                        results[push.contact_id] = PushResult(push.contact_id, push.crm_id, error)
        return [results[p.contact_id] for p in pushes]

    # -- webhooks ------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> None:
        webhooks.verify(
            request,
            secret=self.config.credentials.get("webhook_secret"),
            organization_id=self.config.settings.get("organization_id"),
        )

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return webhooks.parse(body)


__all__ = ["SalesforceConnector", "split_street", "to18"]
