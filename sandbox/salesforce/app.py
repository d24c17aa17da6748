"""The Salesforce REST emulator: the API routes, faults, OAuth, counts and the control API.

API (as simple-salesforce 1.12.10 calls it), under ``/services/data/vXX.X/``:

    query/?q=  queryAll/?q=  query/<locator>-<pos>      SOQL subset, nextRecordsUrl paging
    sobjects/  sobjects/{T}/  sobjects/{T}/describe/     describe
    sobjects/{T}/{id}                                    GET, PATCH (204), DELETE (204)
    sobjects/{T}/{ExtField}/{value}                      GET, PATCH upsert (201/200/300)
    sobjects/{T}/deleted/?start=&end=  .../updated/      replication
    composite/sobjects (POST create, PATCH update, DELETE ?ids=)
    composite/sobjects/{T}/{ExtField} (PATCH upsert)     sObject Collections, <= 200
    limits/
    POST /services/oauth2/token                          client_credentials, refresh_token

Every API answer carries ``Sforce-Limit-Info: api-usage=USED/TOTAL``; errors are JSON arrays
``[{message, errorCode, fields}]``. The control API lives under ``/_sandbox/`` (see
:func:`SalesforceSandbox._control_routes`), with the same operations as Python methods.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import seed as seed_data
from sandbox.salesforce.errors import ApiError, RecordProblem, not_found
from sandbox.salesforce.ids import make_id, to18
from sandbox.salesforce.outbound import OutboundDelivery
from sandbox.salesforce.schema import (
    CURRENCY_ISO_CODE,
    PICKLIST_CODES,
    address_value,
    format_ms,
    parse_datetime,
    picklist_fields,
)
from sandbox.salesforce.store import (
    CRM_USER,
    INTEGRATION_USER,
    Cursor,
    Org,
    Record,
    RecordFault,
    Table,
)

JSON_TYPE = "application/json;charset=UTF-8"
MAX_COLLECTION = 200

_CURRENCY = {
    "US": "USD",
    "DE": "EUR",
    "FR": "EUR",
    "IN": "INR",
    "AU": "AUD",
    "SG": "SGD",
    "JP": "JPY",
    "BR": "BRL",
    "SE": "SEK",
    "PL": "PLN",
    "GB": "GBP",
}


def _dumps(value: Any) -> bytes:
    # orjson: compact UTF-8 as json.dumps(ensure_ascii=False, separators=(",", ":")) writes
    # it, several times faster (a query page of 2,000 records is the bench's hottest answer)
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


class RollingUsage:
    """API requests counted over a rolling window (24 hours in Salesforce: "Total API
    Request Allocations" are counted over the last 24 hours, so the allowance comes back as
    the oldest calls age out). Per-second buckets with a running total: O(1) a request.
    https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm
    """

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()
        self._total = 0

    def clear(self) -> None:
        self._buckets.clear()
        self._total = 0

    def _expire(self, now: int, window: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - window:
            self._total -= self._buckets.popleft()[1]

    def add(self, window: float) -> None:
        now = int(time.monotonic())
        self._expire(now, window)
        if self._buckets and self._buckets[-1][0] == now:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([now, 1])
        self._total += 1

    def used(self, window: float) -> int:
        self._expire(int(time.monotonic()), window)
        return self._total


@dataclass
class Faults:
    """Faults to inject; set any subset with :meth:`SalesforceSandbox.set_faults`."""

    #: the next N API requests answer 403 REQUEST_LIMIT_EXCEEDED for the concurrent
    #: long-running request limit ("ConcurrentRequests ... Limit exceeded.")
    limit_exceeded_next: int = 0
    #: the org's API request allowance over ``usage_window_seconds`` (api-usage TOTAL; None:
    #: the sandbox's ``api_total``); past it every request answers 403
    #: REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded." until calls age out
    daily_limit: int | None = None
    #: the allowance's rolling window (24 hours in Salesforce; shorter in tests)
    usage_window_seconds: float = 86_400.0
    #: the next N API requests answer ``server_error_status``
    server_errors_next: int = 0
    #: a fraction of API requests answer ``server_error_status`` (seeded random: the same
    #: requests fail each time the rate is set)
    server_error_rate: float = 0.0
    server_error_status: int = 503
    #: the seed of the ``server_error_rate`` draws (None: the sandbox's seed)
    server_error_seed: int | None = None
    #: added to every API request
    latency_seconds: float = 0.0
    #: the next N API requests hang ``hang_seconds`` (past a client time-out), then 503
    hang_next: int = 0
    hang_seconds: float = 30.0
    #: answer the next N API requests, then hang every later one ``hang_seconds`` or until
    #: this is set back to None (an org that stops answering mid-run: a test stops a run
    #: at a known page); None: never
    hang_after: int | None = None
    #: serve query pages of at most this many rows, whatever batchSize asks: "There is no
    #: guarantee that the requested batch size is the actual batch size"
    #: (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_queryoptions.htm);
    #: None: as asked
    query_batch_size: int | None = None
    #: every Nth API request finds the session expired: every access token is revoked just
    #: before it is checked, so that request answers 401 INVALID_SESSION_ID ("The session ID
    #: or OAuth token used has expired or is invalid",
    #: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm)
    #: and the client must log in again (0: never)
    expire_tokens_every: int = 0
    #: refuse SOQL dateTime literals with a fraction of a second (400 MALFORMED_QUERY), as a
    #: server holding to the documented formats would: ``YYYY-MM-DDThh:mm:ssZ`` and
    #: ``±hh:mm`` offsets only
    #: (https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_dateformats.htm).
    #: Salesforce itself takes a fraction (tap-salesforce sends microseconds), so off by default
    whole_second_literals: bool = False
    #: per-record write errors keyed by record id, Name or external-ID value:
    #: ``{"key": "UNABLE_TO_LOCK_ROW"}`` or ``{"key": {"code": ..., "times": 1, "message": ...}}``
    record_errors: dict[str, Any] = field(default_factory=dict)


class SalesforceSandbox:
    """An in-memory Salesforce org served as the REST API (``app``) with fault injection.

    ``public_url`` is set by ``sandbox.server`` once the server listens; OAuth answers it as
    ``instance_url``.
    """

    def __init__(
        self,
        seed: int = 0,
        accounts: int = 0,
        *,
        external_id_field: str = "crmsync_id__c",
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str = "sandbox-refresh-token",
        api_total: int = 5_000_000,
        public_url: str = "https://127.0.0.1",
        multi_currency: bool = False,
        state_country_picklists: bool = True,
    ) -> None:
        self.seed_value = seed
        self.public_url = public_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens = {refresh_token}
        self.api_total = api_total
        self._multi_currency_default = multi_currency
        self._picklists_default = state_country_picklists
        self.org = Org(external_id_field=external_id_field, multi_currency=multi_currency)
        self.organization_id = self.org.organization_id
        self.faults = Faults()
        self.counts: Counter[str] = Counter()
        self.usage = RollingUsage()
        self.tokens: set[str] = set()
        #: answers the faults gave, by kind (rate_limit, server_error, hang, session_expired,
        #: invalid_session); cleared with the request counts
        self.injected: Counter[str] = Counter()
        self._since_expiry = 0
        self._rng = random.Random(seed)
        self._closing = False
        self.outbound = OutboundDelivery(
            self.organization_id, self._snapshot, lambda: self.public_url
        )
        self.org.on_change.append(self._on_change)
        self.app = Starlette(routes=self._routes())
        if accounts:
            self.seed(accounts)

    # ======================================================================================
    # Python control API
    # ======================================================================================
    def close(self) -> None:
        self._closing = True
        self.outbound.close()

    def reset(self) -> None:
        """Empty the org, clear faults, counts, open cursors and queued notifications
        (tokens stay valid); multi-currency is as the sandbox was made."""
        with self.org.lock:
            self.org.multi_currency = self._multi_currency_default
            self.org.reset()
            self.org.on_change.append(self._on_change)
            self.faults = Faults()
            self.counts.clear()
            self.injected.clear()
            self._since_expiry = 0
            self.usage.clear()
        self.outbound.clear()
        self.set_state_country_picklists(self._picklists_default)

    def set_multi_currency(self, enabled: bool) -> None:
        """Turn multi-currency on (``Account.CurrencyIsoCode`` appears in the describe and
        may be queried and written) or off (the field is gone, with its values), as an
        admin would. A new org has it off."""
        with self.org.lock:
            self.org.multi_currency = enabled
            account = self.org.objects["Account"]
            if enabled:
                account.add(CURRENCY_ISO_CODE)
            else:
                account.remove(CURRENCY_ISO_CODE.name)
                for rec in self.org.tables["Account"].by_id.values():
                    rec.pop(CURRENCY_ISO_CODE.name, None)

    def _settings(self, body: dict[str, Any]) -> None:
        """``PUT /_sandbox/settings``: ``multi_currency``, ``state_country_picklists``."""
        unknown = set(body) - {"multi_currency", "state_country_picklists"}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        if "multi_currency" in body:
            self.set_multi_currency(bool(body["multi_currency"]))
        if "state_country_picklists" in body:
            self.set_state_country_picklists(bool(body["state_country_picklists"]))

    def set_state_country_picklists(self, enabled: bool) -> None:
        """Turn State and Country/Territory Picklists on (``Billing/ShippingStateCode`` and
        ``...CountryCode`` in the describe, writable) or off (the fields are gone, with their
        values), as an admin would
        (https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_overview.htm).
        The sandbox has them on unless made with ``state_country_picklists=False``."""
        with self.org.lock:
            account = self.org.objects["Account"]
            table = self.org.tables["Account"]
            if enabled:
                for f in picklist_fields():
                    if account.lookup(f.name) is None:
                        account.add(f)
            else:
                for name in PICKLIST_CODES:
                    if account.lookup(name) is not None:
                        account.remove(name)
                for rec in table.by_id.values():
                    for name in PICKLIST_CODES:
                        rec.pop(name, None)
                    for prefix in ("Billing", "Shipping"):
                        rec[f"{prefix}Address"] = address_value(rec, prefix)
                table.json_cache.clear()

    def seed(self, count: int, seed: int | None = None) -> list[str]:
        """Create ``count`` realistic accounts (2-3 contacts each) from ``sandbox.seed``;
        deterministic for a given ``seed`` and the number of accounts already there."""
        ids = []
        with self.org.lock:
            accounts = self.org.tables["Account"]
            contacts = self.org.tables["Contact"]
            start = accounts.counter
            for company in seed_data.companies(
                count, self.seed_value if seed is None else seed, start=start
            ):
                values = _account_values(company)
                if not self.org.multi_currency:
                    values.pop(CURRENCY_ISO_CODE.name)
                for name in PICKLIST_CODES:
                    if self.org.objects["Account"].lookup(name) is None:
                        values.pop(name, None)
                rec = self.org.insert(accounts, values, CRM_USER, "user")
                ids.append(rec["Id"])
                for person in company.contacts:
                    self.org.insert(
                        contacts,
                        {
                            "AccountId": rec["Id"],
                            "FirstName": person.first_name,
                            "LastName": person.last_name,
                            "Email": person.email,
                            "Phone": person.phone,
                        },
                        CRM_USER,
                        "user",
                    )
        return ids

    def create(self, sobject: str, values: Record, user_id: str | None = None) -> str:
        """Create a record as a CRM user would (Salesforce field names); its id."""
        with self.org.lock:
            table = self.org.table(sobject)
            clean = self._user_clean(table, values, create=True)
            return str(self.org.insert(table, clean, user_id or CRM_USER, "user")["Id"])

    def edit(
        self, sobject: str, record_id: str, values: Record, user_id: str | None = None
    ) -> None:
        """Change a record as a CRM user would; bumps SystemModstamp, sets LastModifiedById
        (``user_id``, a CRM user by default, not the integration user)."""
        with self.org.lock:
            table = self.org.table(sobject)
            rec = self._live(table, record_id)
            clean = self._user_clean(table, values, create=False, rec=rec)
            self.org.update(table, rec, clean, user_id or CRM_USER, "user")

    def touch(self, sobject: str, record_id: str) -> None:
        """Bump SystemModstamp without changing data (as automation does)."""
        with self.org.lock:
            table = self.org.table(sobject)
            self.org._touch(table, self._live(table, record_id), CRM_USER, "user")

    def delete(self, sobject: str, record_id: str) -> None:
        """Move a record to the recycle bin."""
        with self.org.lock:
            table = self.org.table(sobject)
            self._wrap(
                lambda: self.org.soft_delete(table, self._live(table, record_id), CRM_USER, "user")
            )

    def restore(self, sobject: str, record_id: str) -> None:
        """Undelete a record from the recycle bin."""
        with self.org.lock:
            table = self.org.table(sobject)
            rec = table.by_id.get(to18(record_id))
            if rec is None:
                raise not_found()
            self._wrap(lambda: self.org.undelete(table, rec, CRM_USER, "user"))

    def merge(self, sobject: str, winner: str, loser: str) -> str:
        """Merge ``loser`` into ``winner`` (loser deleted with MasterRecordId); the winner."""
        with self.org.lock:
            table = self.org.table(sobject)
            win, lose = self._live(table, winner), self._live(table, loser)
            self._wrap(lambda: self.org.merge(table, win, lose, CRM_USER, "user"))
            return str(win["Id"])

    def get(self, sobject: str, record_id: str) -> Record | None:
        """A copy of the record (deleted ones too), or None."""
        with self.org.lock:
            rec = self.org.table(sobject).by_id.get(to18(record_id))
            return dict(rec) if rec is not None else None

    def find(self, sobject: str, field_name: str, value: str) -> list[Record]:
        """Copies of live records whose ``field_name`` equals ``value`` (case-insensitive)."""
        with self.org.lock:
            table = self.org.table(sobject)
            return [
                dict(r)
                for r in table.by_id.values()
                if not r["IsDeleted"]
                and isinstance(r.get(field_name), str)
                and r[field_name].casefold() == value.casefold()
            ]

    def records(self, sobject: str, include_deleted: bool = False) -> list[Record]:
        with self.org.lock:
            return [
                dict(r)
                for r in self.org.table(sobject).by_id.values()
                if include_deleted or not r["IsDeleted"]
            ]

    def count(self, sobject: str, include_deleted: bool = False) -> int:
        with self.org.lock:
            return sum(
                1
                for r in self.org.table(sobject).by_id.values()
                if include_deleted or not r["IsDeleted"]
            )

    def request_counts(self) -> dict[str, int]:
        """Requests served per endpoint (the CRM API and OAuth; the control API excluded)."""
        with self.org.lock:
            return dict(self.counts)

    def api_requests(self) -> int:
        with self.org.lock:
            return sum(self.counts.values())

    def reset_counts(self) -> None:
        with self.org.lock:
            self.counts.clear()
            self.injected.clear()

    def fault_counts(self) -> dict[str, int]:
        """The answers faults gave since the counts were reset, by kind."""
        with self.org.lock:
            return dict(self.injected)

    def set_faults(self, **faults: Any) -> Faults:
        """Set some faults (see :class:`Faults`); ``expire_tokens=True`` also expires every
        access token now."""
        with self.org.lock:
            if faults.pop("expire_tokens", False):
                self.tokens.clear()
            known = {f.name for f in fields(Faults)}
            unknown = set(faults) - known
            if unknown:
                raise ValueError(f"unknown faults: {sorted(unknown)}")
            if "server_error_rate" in faults or "server_error_seed" in faults:
                # the same draws each time a rate is set: a test's run of 5xx answers does not
                # depend on what ran before it
                seed = faults.get("server_error_seed", self.faults.server_error_seed)
                self._rng = random.Random(self.seed_value if seed is None else seed)
            for name, value in faults.items():
                setattr(self.faults, name, value)
            self.org.record_faults = {
                key: _record_fault(spec) for key, spec in self.faults.record_errors.items()
            }
            return self.faults

    def clear_faults(self) -> None:
        with self.org.lock:
            self.faults = Faults()
            self.org.record_faults = {}

    def issue_token(self) -> str:
        """A fresh valid access token (as an OAuth flow would give)."""
        token = f"{self.organization_id[:15]}!{secrets.token_urlsafe(32)}"
        with self.org.lock:
            self.tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """Every access token is now refused with 401 INVALID_SESSION_ID."""
        with self.org.lock:
            self.tokens.clear()

    def freeze_clock(self, at: str | int | None) -> None:
        """Stop the org's clock at ``at`` (ISO text or epoch ms), or let it run (None).
        Records saved while frozen share one SystemModstamp millisecond."""
        with self.org.lock:
            if at is None:
                self.org.frozen_ms = None
            else:
                ms = at if isinstance(at, int) else parse_datetime(at)
                if ms is None:
                    raise ValueError(f"not a date-time: {at!r}")
                self.org.frozen_ms = ms

    def configure_outbound(self, **config: Any) -> dict[str, Any]:
        """Set Outbound Message delivery: ``url``, ``secret``, ``secret_mode`` ("query" or
        "header"), ``enabled``, ``batch_size`` (<= 100), ``retry_seconds``,
        ``include_api_writes``, ``fields``, ``objects`` (default ``("Account",)``),
        ``verify``."""
        return asdict(self.outbound.configure(**config))

    def wait_for_delivery(self, timeout: float = 10.0) -> bool:
        """Block until every queued Outbound Message was acknowledged."""
        return self.outbound.wait(timeout)

    def outbound_stats(self) -> dict[str, Any]:
        stats = asdict(self.outbound.stats)
        stats.pop("bodies")
        stats["pending"] = self.outbound.pending()
        return stats

    # -- helpers
    def _live(self, table: Table, record_id: str) -> Record:
        rec = table.live(record_id)
        if rec is None:
            raise not_found()
        return rec

    def _user_clean(
        self, table: Table, values: Record, *, create: bool, rec: Record | None = None
    ) -> Record:
        def run() -> Record:
            return self.org.clean(table, values, create=create, rec=rec)

        clean: Record = self._wrap(run)
        return clean

    @staticmethod
    def _wrap(fn: Any) -> Any:
        try:
            return fn()
        except RecordProblem as exc:
            raise exc.api_error() from exc

    def _snapshot(self, sobject: str, record_id: str) -> Record | None:
        with self.org.lock:
            rec = self.org.table(sobject).by_id.get(record_id)
            return dict(rec) if rec is not None else None

    def _on_change(self, sobject: str, rec: Record, source: str) -> None:
        # Outbound Messages are workflow actions, and workflow rules run when a record is
        # created or edited, never when it is deleted: a merge sends one for the master
        # (updated, "a single update event for the winning record only") and none for the
        # losers it deletes (developer.salesforce.com, "Triggers and Merge Statements")
        if rec.get("IsDeleted"):
            return
        self.outbound.notify(sobject, rec["Id"], source)

    # ======================================================================================
    # HTTP
    # ======================================================================================
    def _routes(self) -> list[Route]:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return [
            Route("/services/oauth2/token", self._oauth_token, methods=["POST"]),
            Route("/services/data", self._versions, methods=["GET"]),
            Route("/services/data/", self._versions, methods=["GET"]),
            Route("/services/data/{rest:path}", self._api, methods=methods),
            *self._control_routes(),
        ]

    @property
    def api_usage(self) -> int:
        """API requests counted over the rolling window now."""
        with self.org.lock:
            return self.usage.used(self.faults.usage_window_seconds)

    def _allowance(self) -> int:
        return self.faults.daily_limit if self.faults.daily_limit is not None else self.api_total

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_usage}/{self._allowance()}"}

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        if status == 204:
            content = b""
        elif isinstance(body, bytes):
            content = body  # already JSON (query pages)
        else:
            content = _dumps(body)
        return Response(
            content,
            status_code=status,
            headers=headers,
            media_type=None if status == 204 else JSON_TYPE,
        )

    async def _versions(self, request: Request) -> Response:
        return self._json(
            200, [{"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}]
        )

    async def _oauth_token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        with self.org.lock:
            self.counts["oauth_token"] += 1
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if (
                form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret
            ):
                return self._json(
                    400,
                    {"error": "invalid_client", "error_description": "invalid client credentials"},
                )
        elif grant == "refresh_token":
            if form.get("client_id") not in (None, self.client_id) or (
                "client_secret" in form and form["client_secret"] != self.client_secret
            ):
                return self._json(
                    400,
                    {"error": "invalid_client", "error_description": "invalid client credentials"},
                )
            if form.get("refresh_token") not in self.refresh_tokens:
                return self._json(
                    400,
                    {"error": "invalid_grant", "error_description": "expired access/refresh token"},
                )
        else:
            return self._json(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
            )
        token = self.issue_token()
        issued = str(int(time.time() * 1000))
        return self._json(
            200,
            {
                "access_token": token,
                "instance_url": self.public_url,
                "id": f"{self.public_url}/id/{self.organization_id}/{INTEGRATION_USER}",
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": secrets.token_urlsafe(32),
                "scope": "api refresh_token",
            },
        )

    async def _api(self, request: Request) -> Response:
        response = await self._api_answer(request)
        response.headers.update(self._limit_header())  # on every API answer, errors too
        return response

    async def _api_answer(self, request: Request) -> Response:
        # Split the raw path before decoding: an external id may hold an encoded "/".
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        rest = raw_path.decode("latin-1").split("?", 1)[0][len("/services/data/") :]
        segments = [unquote(s) for s in rest.split("/") if s != ""]
        method = request.method
        try:
            if not segments or not segments[0].startswith("v"):
                raise not_found()
            version = segments[0][1:]
            try:
                version_number = float(version)
            except ValueError:
                raise not_found() from None
            handler, key = self._route(method, segments[1:])
        except ApiError as exc:
            return self._json(exc.status, exc.body())
        with self.org.lock:
            self.counts[key] += 1
            self.usage.add(self.faults.usage_window_seconds)
        fault = await self._fault(request)
        if fault is not None:
            return fault
        try:
            body = None
            if method in ("POST", "PATCH", "PUT"):
                raw = await request.body()
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError as exc:
                        raise ApiError(
                            400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}"
                        ) from exc
            with self.org.lock:
                status, payload = handler(request, segments[1:], body, version, version_number)
        except ApiError as exc:
            return self._json(exc.status, exc.body())
        return self._json(status, payload)

    @staticmethod
    def _hangs(f: Faults) -> str | None:
        """Whether this request hangs: "next" (``hang_next``), "after" (``hang_after``) or
        None; the caller holds the org lock."""
        if f.hang_next > 0:
            f.hang_next -= 1
            return "next"
        if f.hang_after is None:
            return None
        if f.hang_after > 0:
            f.hang_after -= 1
            return None
        return "after"

    def _still_hanging(self, hang: str, deadline: float) -> bool:
        lifted = hang == "after" and self.faults.hang_after is None
        return time.monotonic() < deadline and not self._closing and not lifted

    async def _fault(self, request: Request) -> Response | None:
        f = self.faults
        if f.latency_seconds:
            await asyncio.sleep(f.latency_seconds)
        with self.org.lock:
            hang = self._hangs(f)
            if hang:
                self.injected["hang"] += 1
        if hang:
            deadline = time.monotonic() + f.hang_seconds
            while self._still_hanging(hang, deadline):
                await asyncio.sleep(0.05)
            # The client gave up long ago: close the connection after answering, or the
            # server would keep a dead kept-alive TLS connection (and wait on it at stop).
            return self._json(
                503,
                ApiError(503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable").body(),
                {"Connection": "close"},
            )
        auth = request.headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else ""
        with self.org.lock:
            if f.expire_tokens_every > 0:
                self._since_expiry += 1
                if self._since_expiry >= f.expire_tokens_every:
                    self._since_expiry = 0
                    self.tokens.clear()
                    self.injected["session_expired"] += 1
            if token not in self.tokens:
                self.injected["invalid_session"] += 1
                return self._json(
                    401,
                    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                )
            if self.usage.used(f.usage_window_seconds) > self._allowance():
                return self._json(
                    403,
                    [
                        {
                            "message": "TotalRequests Limit exceeded.",
                            "errorCode": "REQUEST_LIMIT_EXCEEDED",
                        }
                    ],
                    self._limit_header(),
                )
            if f.limit_exceeded_next > 0:
                f.limit_exceeded_next -= 1
                self.injected["rate_limit"] += 1
                return self._json(
                    403,
                    [
                        {
                            "message": "ConcurrentRequests (Concurrent API Requests) Limit "
                            "exceeded.",
                            "errorCode": "REQUEST_LIMIT_EXCEEDED",
                        }
                    ],
                    self._limit_header(),
                )
            failed = f.server_errors_next > 0
            if failed:
                f.server_errors_next -= 1
            elif f.server_error_rate and self._rng.random() < f.server_error_rate:
                failed = True
            if failed:
                self.injected["server_error"] += 1
                status = f.server_error_status
                code = "SERVER_UNAVAILABLE" if status == 503 else "UNKNOWN_EXCEPTION"
                message = (
                    "Server is temporarily unavailable"
                    if status == 503
                    else "An unexpected error occurred. Please include this ErrorId if you "
                    f"contact support: {secrets.randbelow(10**9)}-{secrets.randbelow(10**5)}"
                    " (-1)"
                )
                return self._json(
                    status, [{"message": message, "errorCode": code}], self._limit_header()
                )
        return None

    def _query_batch(self, request: Request) -> int:
        """Rows per query page: what ``Sforce-Query-Options: batchSize`` asks, or fewer when
        the ``query_batch_size`` fault says so."""
        asked = _batch_size(request)
        cap = self.faults.query_batch_size
        return min(asked, cap) if cap else asked

    # -- API routing ----------------------------------------------------------------------
    def _route(self, method: str, seg: list[str]) -> tuple[Any, str]:
        n = len(seg)
        head = seg[0] if seg else ""
        if n == 0 and method == "GET":
            return self._resources, "resources"
        if head in ("query", "queryAll") and method == "GET":
            if n == 1:
                return self._query, head
            if n == 2:
                return self._query_more, "queryMore"
        if head == "limits" and n == 1 and method == "GET":
            return self._limits, "limits"
        if head == "sobjects":
            if n == 1 and method == "GET":
                return self._describe_global, "describeGlobal"
            if n == 2:
                if method == "GET":
                    return self._sobject_info, "sobject"
                if method == "POST":
                    return self._create, "create"
            if n == 3:
                action = seg[2]
                if action == "describe" and method == "GET":
                    return self._describe, "describe"
                if action == "deleted" and method == "GET":
                    return self._deleted, "deleted"
                if action == "updated" and method == "GET":
                    return self._updated, "updated"
                if method == "GET":
                    return self._get, "get"
                if method == "PATCH":
                    return self._update, "update"
                if method == "DELETE":
                    return self._delete, "delete"
            if n == 4:
                if method == "GET":
                    return self._get_by_external_id, "getByExternalId"
                if method == "PATCH":
                    return self._upsert, "upsert"
        if head == "composite" and n >= 2 and seg[1] == "sobjects":
            if n == 2 and method == "POST":
                return self._collection_create, "collectionsCreate"
            if n == 2 and method == "PATCH":
                return self._collection_update, "collectionsUpdate"
            if n == 2 and method == "DELETE":
                return self._collection_delete, "collectionsDelete"
            if n == 4 and method == "PATCH":
                return self._collection_upsert, "collectionsUpsert"
        raise not_found()

    # -- handlers: each returns (status, JSON body); called with the org lock held
    def _resources(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        base = f"/services/data/v{v}"
        return 200, {
            "sobjects": f"{base}/sobjects",
            "query": f"{base}/query",
            "queryAll": f"{base}/queryAll",
            "limits": f"{base}/limits",
            "composite": f"{base}/composite",
        }

    def _limits(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        total = self._allowance()
        used = self.usage.used(self.faults.usage_window_seconds)
        return 200, {"DailyApiRequests": {"Max": total, "Remaining": max(0, total - used)}}

    def _query(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        text = request.query_params.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        query, records = self.org.run_query(
            text,
            include_deleted=seg[0] == "queryAll",
            whole_seconds=self.faults.whole_second_literals,
        )
        cursor = Cursor(query.obj.name, query.fields, records)
        return 200, self._page(cursor, None, 0, self._query_batch(request), v, seg[0])

    def _query_more(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        locator, _, pos = seg[1].partition("-")
        if not pos.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor = self.org.get_cursor(locator)
        return 200, self._page(cursor, locator, int(pos), self._query_batch(request), v, seg[0])

    def _page(
        self, cursor: Cursor, locator: str | None, pos: int, batch: int, v: str, endpoint: str
    ) -> bytes:
        """One query answer, as JSON bytes: each record's JSON is cached until it changes."""
        total = len(cursor.records)
        chunk = cursor.records[pos : pos + batch]
        end = pos + len(chunk)
        head: dict[str, Any] = {"totalSize": total, "done": end >= total}
        if end < total:
            if locator is None:
                locator = self.org.open_cursor(cursor)
            head["nextRecordsUrl"] = f"/services/data/v{v}/{endpoint}/{locator}-{end}"
        name = cursor.object_name
        url = f"/services/data/v{v}/sobjects/{name}/"
        names = cursor.fields
        key = (v, *names)
        cache = self.org.tables[name].json_cache
        parts = []
        for rec in chunk:
            hit = cache.get(rec["Id"])
            if hit is None or hit[0] != key:
                item: dict[str, Any] = {"attributes": {"type": name, "url": url + rec["Id"]}}
                for f in names:
                    item[f] = rec[f]
                hit = (key, _dumps(item))
                cache[rec["Id"]] = hit
            parts.append(hit[1])
        return b"".join([_dumps(head)[:-1], b',"records":[', b",".join(parts), b"]}"])

    def _describe_global(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        return 200, {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [
                {
                    k: obj.describe()[k]
                    for k in (
                        "name",
                        "label",
                        "keyPrefix",
                        "createable",
                        "updateable",
                        "queryable",
                        "custom",
                    )
                }
                for obj in self.org.objects.values()
            ],
        }

    def _sobject_info(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        described = table.obj.describe()
        recent = [
            {"attributes": {"type": table.obj.name}, "Id": r["Id"], "Name": r.get("Name")}
            for r in list(table.by_id.values())[-5:]
        ]
        return 200, {
            "objectDescribe": {k: described[k] for k in ("name", "label", "keyPrefix")},
            "recentItems": recent,
        }

    def _describe(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        return 200, self.org.table(seg[1]).obj.describe()

    def _get(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        rec = table.live(seg[2])
        if rec is None:
            raise not_found()
        return 200, self._render(table, rec, v, request.query_params.get("fields"))

    def _get_by_external_id(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        field_def = self._ext_field(table, seg[2])
        matches = self._ext_matches(table, field_def.name, seg[3])
        if not matches:
            raise not_found()
        if len(matches) > 1:
            return 300, [
                f"/services/data/v{v}/sobjects/{table.obj.name}/{r['Id']}" for r in matches
            ]
        return 200, self._render(table, matches[0], v, request.query_params.get("fields"))

    def _render(self, table: Table, rec: Record, v: str, only: str | None) -> dict[str, Any]:
        names = list(table.obj.fields)
        if only:
            names = []
            for n in only.split(","):
                f = table.obj.lookup(n.strip())
                names.append(f.name if f is not None else n.strip())
        out: dict[str, Any] = {
            "attributes": {
                "type": table.obj.name,
                "url": f"/services/data/v{v}/sobjects/{table.obj.name}/{rec['Id']}",
            }
        }
        for n in names:
            out[n] = rec.get(n)
        return out

    def _create(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        try:
            rec = self._save(table, body, None)
        except RecordProblem as exc:
            raise exc.api_error() from exc
        return 201, {"id": rec["Id"], "success": True, "errors": []}

    def _update(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        rec = table.live(seg[2])
        if rec is None:
            raise not_found()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        try:
            self._save(table, body, rec)
        except RecordProblem as exc:
            raise exc.api_error() from exc
        return 204, None

    def _delete(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        rec = table.by_id.get(to18(seg[2]))
        if rec is None:
            raise not_found()
        if rec["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        self.org.soft_delete(table, rec, INTEGRATION_USER, "api")
        return 204, None

    def _upsert(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        field_def = self._ext_field(table, seg[2])
        value = seg[3]
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        matches = self._ext_matches(table, field_def.name, value)
        if len(matches) > 1:
            return 300, [
                f"/services/data/v{v}/sobjects/{table.obj.name}/{r['Id']}" for r in matches
            ]
        values = dict(body)
        values.pop(field_def.name, None)
        try:
            if matches:
                self._save(table, values, matches[0])
                if vn >= 46.0:
                    return 200, {
                        "id": matches[0]["Id"],
                        "success": True,
                        "errors": [],
                        "created": False,
                    }
                return 204, None
            if field_def.name != "Id":
                values[field_def.name] = value
            rec = self._save(table, values, None)
        except RecordProblem as exc:
            raise exc.api_error() from exc
        return 201, {"id": rec["Id"], "success": True, "errors": [], "created": True}

    def _ext_field(self, table: Table, name: str) -> Any:
        field_def = table.obj.lookup(name)
        if field_def is None or not (field_def.external_id or field_def.name == "Id"):
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {name}",
            )
        return field_def

    def _ext_matches(self, table: Table, name: str, value: str) -> list[Record]:
        if name == "Id":
            rec = table.live(value)
            return [rec] if rec is not None else []
        return table.find_ext(name, value)

    def _save(self, table: Table, body: Record, rec: Record | None) -> Record:
        """Validate and write one record from the API (raises RecordProblem)."""
        values = self.org.clean(table, body, create=rec is None, rec=rec)
        fault = self.org.record_fault(self.org.fault_keys(rec, values))
        if fault is not None:
            raise fault
        if rec is None:
            return self.org.insert(table, values, INTEGRATION_USER, "api")
        self.org.update(table, rec, values, INTEGRATION_USER, "api")
        return rec

    # -- replication
    def _window(self, request: Request) -> tuple[int, int]:
        start = parse_datetime(request.query_params.get("start", ""))
        end = parse_datetime(request.query_params.get("end", ""))
        if start is None or end is None:
            raise ApiError(400, "MALFORMED_QUERY", "start and end must be ISO 8601 date-times")
        if end < start:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "end date is before start date")
        return start, end

    def _deleted(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        start, end = self._window(request)
        earliest = self.org.now_ms() - 15 * 86_400_000
        items = [
            {"id": rid, "deletedDate": format_ms(at)}
            for rid, at in table.deleted_at.items()
            if start <= at <= end
        ]
        return 200, {
            "deletedRecords": items,
            "earliestDateAvailable": format_ms(earliest),
            "latestDateCovered": format_ms(min(end, self.org.now_ms())),
        }

    def _updated(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        table = self.org.table(seg[1])
        start, end = self._window(request)
        lo, hi = format_ms(start), format_ms(end)
        ids = [
            rid
            for stamp, rid in table.index
            if lo <= stamp <= hi and not table.by_id[rid]["IsDeleted"]
        ]
        return 200, {"ids": ids, "latestDateCovered": format_ms(min(end, self.org.now_ms()))}

    # -- sObject Collections
    def _collection_records(self, body: Any) -> tuple[list[Any], bool]:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records is required")
        records = body["records"]
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} "
                "records into this call",
            )
        for rec in records:
            if (
                not isinstance(rec, dict)
                or not isinstance(rec.get("attributes"), dict)
                or ("type" not in rec["attributes"])
            ):
                raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        return records, bool(body.get("allOrNone", False))

    def _run_collection(
        self, items: list[Any], all_or_none: bool, one: Any
    ) -> list[dict[str, Any]]:
        """Run ``one(item) -> result`` per item; with allOrNone, roll back on any failure."""
        snapshot = None
        if all_or_none:
            snapshot = self._take_snapshot()
        results = []
        failed = False
        for item in items:
            try:
                results.append(one(item))
            except RecordProblem as exc:
                failed = True
                results.append({"success": False, "errors": [exc.entry()]})
        if failed and snapshot is not None:
            self._restore_snapshot(snapshot)
            rolled = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and "
                "the request was using AllOrNone header",
                "fields": [],
            }
            results = [
                r if not r["success"] else {"success": False, "errors": [rolled]} for r in results
            ]
        return results

    def _take_snapshot(self) -> Any:
        import copy

        return {
            name: (
                copy.deepcopy(t.by_id),
                list(t.index),
                t.counter,
                dict(t.deleted_at),
                copy.deepcopy(t.ext_index),
            )
            for name, t in self.org.tables.items()
        }

    def _restore_snapshot(self, snapshot: Any) -> None:
        for name, (by_id, index, counter, deleted_at, ext_index) in snapshot.items():
            t = self.org.tables[name]
            t.by_id, t.index, t.counter, t.deleted_at, t.ext_index = (
                by_id,
                index,
                counter,
                deleted_at,
                ext_index,
            )

    def _collection_create(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        records, all_or_none = self._collection_records(body)

        def one(item: Record) -> dict[str, Any]:
            table = self.org.table(item["attributes"]["type"])
            if item.get("id") or item.get("Id"):
                raise RecordProblem("INVALID_FIELD", "cannot specify Id in an insert call")
            rec = self._save(table, item, None)
            return {"id": rec["Id"], "success": True, "errors": []}

        return 200, self._run_collection(records, all_or_none, one)

    def _collection_update(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        records, all_or_none = self._collection_records(body)

        def one(item: Record) -> dict[str, Any]:
            table = self.org.table(item["attributes"]["type"])
            rid = item.get("id") or item.get("Id")
            if not rid:
                raise RecordProblem("MISSING_ARGUMENT", "Id not specified in an update call")
            rec = table.by_id.get(to18(str(rid)))
            if rec is None:
                raise RecordProblem("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            if rec["IsDeleted"]:
                raise RecordProblem("ENTITY_IS_DELETED", "entity is deleted")
            values = {k: val for k, val in item.items() if k not in ("id", "Id")}
            self._save(table, values, rec)
            return {"id": rec["Id"], "success": True, "errors": []}

        return 200, self._run_collection(records, all_or_none, one)

    def _collection_upsert(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        if vn < 46.0:
            raise not_found()
        table = self.org.table(seg[2])
        field_def = self._ext_field(table, seg[3])
        records, all_or_none = self._collection_records(body)

        def one(item: Record) -> dict[str, Any]:
            value = item.get(field_def.name)
            if value is None:
                for k, val in item.items():
                    if k.lower() == field_def.name.lower():
                        value = val
            if value in (None, ""):
                raise RecordProblem(
                    "MISSING_ARGUMENT", f"{field_def.name} not specified", [field_def.name]
                )
            matches = self._ext_matches(table, field_def.name, str(value))
            if len(matches) > 1:
                raise RecordProblem(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{field_def.name}: more than one record found for external id field: "
                    f"{[r['Id'] for r in matches]}",
                    [field_def.name],
                )
            if matches:
                values = {k: val for k, val in item.items() if k.lower() != field_def.name.lower()}
                self._save(table, values, matches[0])
                return {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
            rec = self._save(table, item, None)
            return {"id": rec["Id"], "success": True, "errors": [], "created": True}

        return 200, self._run_collection(records, all_or_none, one)

    def _collection_delete(
        self, request: Request, seg: list[str], body: Any, v: str, vn: float
    ) -> tuple[int, Any]:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if len(ids) > MAX_COLLECTION:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "too many ids")
        all_or_none = request.query_params.get("allOrNone", "false").lower() == "true"

        def one(rid: str) -> dict[str, Any]:
            for table in self.org.tables.values():
                rec = table.by_id.get(to18(rid))
                if rec is not None:
                    self.org.soft_delete(table, rec, INTEGRATION_USER, "api")
                    return {"id": rec["Id"], "success": True, "errors": []}
            raise RecordProblem("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")

        return 200, self._run_collection(ids, all_or_none, one)

    # ======================================================================================
    # control API over HTTP (never counted, never faulted)
    # ======================================================================================
    def _control_routes(self) -> list[Route]:
        def route(path: str, fn: Any, method: str) -> Route:
            async def endpoint(request: Request) -> Response:
                raw = await request.body()
                body = json.loads(raw) if raw else {}
                try:
                    result = fn(request, body)
                except ApiError as exc:
                    return self._json(exc.status, exc.body())
                except (ValueError, TypeError) as exc:
                    return self._json(400, [{"message": str(exc), "errorCode": "BAD_REQUEST"}])
                return self._json(200, result)

            return Route("/_sandbox" + path, endpoint, methods=[method])

        p = "path_params"
        return [
            route("/reset", lambda r, b: self.reset(), "POST"),
            route("/seed", lambda r, b: self.seed(int(b.get("count", 0)), b.get("seed")), "POST"),
            route(
                "/records/{sobject}",
                lambda r, b: {
                    "id": self.create(
                        getattr(r, p)["sobject"], b.get("fields", {}), b.get("user_id")
                    )
                },
                "POST",
            ),
            route(
                "/records/{sobject}",
                lambda r, b: self.records(
                    getattr(r, p)["sobject"], r.query_params.get("include_deleted") == "true"
                ),
                "GET",
            ),
            route("/records/{sobject}/{id}", lambda r, b: self._control_get(r), "GET"),
            route(
                "/records/{sobject}/{id}",
                lambda r, b: self.edit(
                    getattr(r, p)["sobject"],
                    getattr(r, p)["id"],
                    b.get("fields", {}),
                    b.get("user_id"),
                ),
                "PATCH",
            ),
            route(
                "/records/{sobject}/{id}",
                lambda r, b: self.delete(getattr(r, p)["sobject"], getattr(r, p)["id"]),
                "DELETE",
            ),
            route(
                "/records/{sobject}/{id}/restore",
                lambda r, b: self.restore(getattr(r, p)["sobject"], getattr(r, p)["id"]),
                "POST",
            ),
            route(
                "/records/{sobject}/{id}/touch",
                lambda r, b: self.touch(getattr(r, p)["sobject"], getattr(r, p)["id"]),
                "POST",
            ),
            route(
                "/merge/{sobject}",
                lambda r, b: {"id": self.merge(getattr(r, p)["sobject"], b["winner"], b["loser"])},
                "POST",
            ),
            route("/counts", lambda r, b: self.request_counts(), "GET"),
            route("/counts", lambda r, b: self.reset_counts(), "DELETE"),
            route("/faults", lambda r, b: asdict(self.faults), "GET"),
            route("/faults", lambda r, b: asdict(self.set_faults(**b)), "PUT"),
            route("/faults", lambda r, b: self.clear_faults(), "DELETE"),
            route("/settings", lambda r, b: self._settings(b), "PUT"),
            route("/tokens", lambda r, b: {"access_token": self.issue_token()}, "POST"),
            route("/tokens/expire", lambda r, b: self.expire_tokens(), "POST"),
            route("/clock", lambda r, b: self.freeze_clock(b.get("frozen")), "PUT"),
            route("/outbound", lambda r, b: self.configure_outbound(**b), "PUT"),
            route("/outbound", lambda r, b: self.outbound_stats(), "GET"),
            route(
                "/outbound/flush",
                lambda r, b: {
                    "delivered": self.wait_for_delivery(float(r.query_params.get("timeout", "10")))
                },
                "POST",
            ),
        ]

    def _control_get(self, request: Request) -> Record:
        rec = self.get(request.path_params["sobject"], request.path_params["id"])
        if rec is None:
            raise not_found()
        return rec


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    for part in options.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(200, min(2000, int(value)))
    return 2000


def _record_fault(spec: Any) -> RecordFault:
    if isinstance(spec, str):
        return RecordFault(spec)
    return RecordFault(spec["code"], spec.get("times"), spec.get("message"))


def _account_values(company: seed_data.SeedCompany) -> Record:
    values: Record = {
        "Name": company.name,
        "BillingStreet": company.street,
        "BillingCity": company.city,
        "BillingState": company.state or None,
        "BillingStateCode": company.state_code or None,
        "BillingPostalCode": company.postal_code,
        "BillingCountry": company.country,
        "BillingCountryCode": company.country_code,
        "Phone": company.phone,
        "Website": f"https://www.{company.domain}",
        "CurrencyIsoCode": _CURRENCY.get(company.country_code, "USD"),
        "Billing_Email__c": f"billing@{company.domain}",
    }
    if company.index % 3 == 0:
        for part in (
            "Street",
            "City",
            "State",
            "StateCode",
            "PostalCode",
            "Country",
            "CountryCode",
        ):
            values[f"Shipping{part}"] = values[f"Billing{part}"]
    return values


__all__ = ["Faults", "SalesforceSandbox", "make_id"]
