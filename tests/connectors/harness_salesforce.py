"""The Salesforce side of the connector contract suite: drives the sandbox's control API as
a CRM user would, and builds connectors pointed at it.

    with Sandbox(SandboxOptions()) as sb:
        harness = make_harness(sb)
        connector = harness.connector(max_attempts=3)

``connector()`` starts with a fresh access token and can refresh it by OAuth client
credentials, trusts the sandbox's certificate, and uses tiny back-off and limit waits so that
retry tests do not sleep. Its field map is the connector's default plus
``email -> Billing_Email__c`` (Accounts have no standard e-mail field).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from connectors.base import ConnectionConfig, CustomerFields, RateGate, WebhookRequest
from connectors.salesforce import SalesforceConnector, ack_response
from connectors.salesforce.mapping import AccountMapping, build_mapping
from connectors.testing.harness import InjectedFault, WebhookReceiver
from sandbox.salesforce import SalesforceSandbox
from sandbox.server import Sandbox, SandboxOptions

WEBHOOK_SECRET = "sandbox-webhook-secret"

#: close() of every client made against a sandbox: uvicorn's stop waits (up to its join
#: time-out, 10 s) for idle kept-alive TLS connections, so clients are closed first
_OPEN_CLIENTS: list[Callable[[], None]] = []


def track(close: Callable[[], None]) -> None:
    """Close this client (a session's or connector's ``close``) before the sandbox stops."""
    _OPEN_CLIENTS.append(close)


def close_clients() -> None:
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop()()


DEFAULT_FIELD_MAP: dict[str, str | None] = {"email": "Billing_Email__c"}


class RunningSalesforce(Protocol):
    """What the harness needs of a running sandbox (``sandbox.server.Sandbox`` has it)."""

    salesforce: SalesforceSandbox
    ca_file: Any

    @property
    def salesforce_url(self) -> str: ...


class SalesforceHarness:
    key = "salesforce"
    pull_page_max = 2000
    incremental_page_max = 2000
    push_batch_max = 200
    missing_id = "001000000000000AAA"  # well-formed, names no record
    sends_retry_after = False  # REQUEST_LIMIT_EXCEEDED carries no Retry-After
    can_refresh_tokens = True  # connector() has OAuth client credentials
    rejectable = ("validation", "duplicate")

    def __init__(
        self, sandbox: RunningSalesforce, field_map: Mapping[str, str | None] | None = None
    ) -> None:
        self.sandbox = sandbox
        self.sf = sandbox.salesforce
        self.field_map = dict(DEFAULT_FIELD_MAP if field_map is None else field_map)
        self.mapping: AccountMapping = build_mapping(self.field_map)
        self._to_customer = self.mapping.to_customer()
        # the suite maps every default field: an org with multi-currency on (a new org, the
        # sandbox's default, has none: tests of that ask for it)
        self.sf.set_multi_currency(True)

    def push_calls(self, updates: int, creates: int) -> int:
        """Batches per kind: updates by id, creates as upserts on the billing id."""
        return math.ceil(updates / self.push_batch_max) + math.ceil(creates / self.push_batch_max)

    # -- connectors
    def settings(self, **overrides: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "instance_url": self.sandbox.salesforce_url,
            "ca_bundle": str(self.sandbox.ca_file),
            "organization_id": self.sf.organization_id,
            "request_timeout": 10.0,
            "max_attempts": 5,
            "backoff_base_seconds": 0.001,
            "limit_wait_seconds": 0.01,
            "daily_limit_recheck_seconds": 1.0,
        }
        settings.update(overrides)
        return settings

    def credentials(self, **overrides: str) -> dict[str, str]:
        creds = {
            "access_token": self.sf.issue_token(),
            "client_id": self.sf.client_id,
            "client_secret": self.sf.client_secret,
            "webhook_secret": WEBHOOK_SECRET,
        }
        creds.update(overrides)
        return {k: v for k, v in creds.items() if v}

    def static_credentials(self) -> dict[str, str]:
        return {"access_token": self.sf.issue_token(), "webhook_secret": WEBHOOK_SECRET}

    def connector(self, **settings: Any) -> SalesforceConnector:
        """A fresh connector; ``field_map=``, ``credentials=`` and ``gate=`` are taken apart
        from the settings overrides."""
        field_map = settings.pop("field_map", self.field_map)
        credentials = settings.pop("credentials", None)
        gate: RateGate | None = settings.pop("gate", None)
        config = ConnectionConfig(
            connection_id="salesforce-test",
            credentials=credentials if credentials is not None else self.credentials(),
            settings=self.settings(**settings),
            field_map=field_map,
        )
        connector = SalesforceConnector(config, gate=gate)
        track(connector.close)
        return connector

    # -- the CRM user's side
    def reset(self) -> None:
        self.sf.reset()
        self.sf.set_multi_currency(True)
        self.sf.freeze_clock(None)

    def seed(self, count: int) -> list[str]:
        return self.sf.seed(count)

    def create(self, fields: CustomerFields) -> str:
        return self.sf.create("Account", self.mapping.to_salesforce(dict(fields)))

    def edit(self, crm_id: str, fields: CustomerFields) -> None:
        fields = dict(fields)
        if self.mapping.missing_lines(fields):
            current = self.read(crm_id)
            for group in self.mapping.missing_lines(fields):
                for _, customer_field in group.lines:
                    fields.setdefault(customer_field, current.get(customer_field))
        self.sf.edit("Account", crm_id, self.mapping.to_salesforce(fields))

    def read(self, crm_id: str) -> CustomerFields:
        record = self.sf.get("Account", crm_id)
        if record is None:
            raise KeyError(crm_id)
        return self._to_customer(record)

    def delete(self, crm_id: str) -> None:
        self.sf.delete("Account", crm_id)

    def restore(self, crm_id: str) -> None:
        self.sf.restore("Account", crm_id)

    def merge(self, winner: str, loser: str) -> str:
        return self.sf.merge("Account", winner, loser)

    def set_faults(self, **faults: Any) -> None:
        self.sf.set_faults(**faults)

    def api_calls(self) -> int:
        return self.sf.api_requests()

    # -- knobs of the contract suite
    def change_at(self, crm_ids: Sequence[str], ms: int) -> None:
        self.sf.freeze_clock(ms)  # the org clock never goes back, even when thawed
        try:
            for crm_id in crm_ids:
                self.sf.touch("Account", crm_id)
        finally:
            self.sf.freeze_clock(None)

    def rate_limit(self, times: int, retry_after: float | None = None) -> InjectedFault:
        """The concurrent-request limit (Salesforce's only short-window one)."""
        if retry_after is not None:
            raise ValueError("Salesforce's REQUEST_LIMIT_EXCEEDED carries no Retry-After")
        self.sf.set_faults(limit_exceeded_next=times)
        # no Retry-After: the connector waits its limit_wait_seconds (settings() default)
        wait = float(self.settings()["limit_wait_seconds"])
        return InjectedFault("ConcurrentRequests (Concurrent API Requests)", wait_seconds=wait)

    def spend_allowance(self, after: int) -> InjectedFault:
        """The org's rolling 24-hour allowance runs out after ``after`` more API calls."""
        self.sf.set_faults(daily_limit=self.sf.api_usage + after)
        return InjectedFault("TotalRequests Limit exceeded.")

    def restore_allowance(self) -> None:
        """The calls that spent the allowance age out of the rolling 24 hours."""
        self.sf.set_faults(daily_limit=None)

    def server_errors(self, times: int) -> InjectedFault:
        self.sf.set_faults(server_errors_next=times, server_error_status=503)
        return InjectedFault("Server is temporarily unavailable")

    def hang(self, times: int, seconds: float) -> None:
        self.sf.set_faults(hang_next=times, hang_seconds=seconds)

    def reject_record(self, key: str, kind: str) -> InjectedFault:
        code = "DUPLICATE_VALUE" if kind == "duplicate" else "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        errors = dict(self.sf.faults.record_errors)
        errors[key] = code
        self.sf.set_faults(record_errors=errors)
        if kind == "duplicate":
            return InjectedFault("duplicate value found")
        return InjectedFault("Billing address is not valid for this account")

    def expire_tokens(self) -> InjectedFault:
        self.sf.expire_tokens()
        return InjectedFault("Session expired or invalid")

    def webhook_requests(self, change: Callable[[], object]) -> list[WebhookRequest]:
        receiver = WebhookReceiver(status=200, body=ack_response(), content_type="text/xml")
        try:
            self.sf.configure_outbound(url=receiver.url, secret=WEBHOOK_SECRET, retry_seconds=0.01)
            change()
            if not self.sf.wait_for_delivery(10):
                raise TimeoutError("the sandbox did not deliver its Outbound Messages")
            return list(receiver.requests)
        finally:
            self.sf.configure_outbound(url=None)
            receiver.close()

    def tampered_webhooks(self, request: WebhookRequest) -> list[WebhookRequest]:
        """Wrong secret, no secret, another organisation, a DTD smuggled in."""
        no_secret = request.url.replace(f"secret={WEBHOOK_SECRET}", "secret=")
        wrong_secret = request.url.replace(f"secret={WEBHOOK_SECRET}", "secret=guess")
        org = self.sf.organization_id.encode()
        other_org = request.body.replace(org, b"00D000000000099AAA")
        with_dtd = request.body.replace(b"?>", b'?><!DOCTYPE x [<!ENTITY e "boom">]>', 1)
        return [
            WebhookRequest(request.method, wrong_secret, request.headers, request.body),
            WebhookRequest(request.method, no_secret, request.headers, request.body),
            WebhookRequest(request.method, request.url, request.headers, other_org),
            WebhookRequest(request.method, request.url, request.headers, with_dtd),
        ]


def make_harness(sandbox: RunningSalesforce) -> SalesforceHarness:
    """The Salesforce harness for a running ``sandbox.server.Sandbox``."""
    return SalesforceHarness(sandbox)


@contextmanager
def running_sandbox(**options: Any) -> Iterator[Sandbox]:
    """A started ``Sandbox`` (both emulators) for a test module's fixture."""
    with Sandbox(SandboxOptions(**options)) as sb:
        try:
            yield sb
        finally:
            close_clients()
            _drop_idle_connections(sb)


def _drop_idle_connections(sb: Sandbox) -> None:
    """Abort connections the clients left (e.g. after a time-out): uvicorn's stop otherwise
    waits for their TLS shutdown until ``BackgroundServer.stop``'s 10 s join time-out.
    (The lasting fix belongs in ``sandbox/http.py``.)"""
    for background in getattr(sb, "_servers", []):
        server = getattr(background, "_server", None)
        if server is None:
            continue
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            loop = getattr(connection, "loop", None)
            if transport is not None and loop is not None:
                loop.call_soon_threadsafe(transport.abort)
