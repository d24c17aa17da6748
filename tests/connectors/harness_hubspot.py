"""The HubSpot side of the connector contract suite: drives the sandbox as a CRM user would
(its Python control methods) and builds connectors pointed at it.

    with Sandbox(SandboxOptions()) as sb:
        harness = make_harness(sb)
        connector = harness.connector(max_attempts=3)

``connector()`` uses tiny back-off, a 5 s request time-out, ``clock_skew_ms=0`` (the
sandbox shares our clock) and ``search_lag_seconds=0``: the sandbox's search index has every
write at once (unless a test sets its ``search_index_delay_seconds`` fault), and the suites
count exactly what each pull reads; with the default lag, a pull right after another reads
again the records modified in the seconds before it (as pulled and unchanged, at no extra
call: ``tests/connectors/test_hubspot_connector.py`` and ``tests/sync/test_hubspot_search_lag.py``
pin that). ``field_map=``, ``credentials=`` and ``gate=`` (a ``RateGate``)
are taken apart from the other settings. Faults keep their sandbox names
(``sandbox/hubspot/faults.py``); on reset the burst window is set to 20 ms and the search
limit lifted, and the connectors wait 10 ms after a 429 without ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from connectors.base import ConnectionConfig, CustomerFields, RateGate, WebhookRequest
from connectors.hubspot import HubSpotConnector
from connectors.hubspot import mapping as hubspot_mapping
from connectors.hubspot.webhooks import signature_v3
from connectors.testing.harness import InjectedFault, WebhookReceiver
from sandbox.hubspot import HubSpotSandbox
from sandbox.server import Sandbox

ACCESS_TOKEN = "sandbox-private-app-token"
CLIENT_SECRET = "sandbox-client-secret"
FAST_RATE_INTERVAL_MS = 20
#: how long the connectors it makes wait after a 429 without Retry-After (1 s by default)
FAST_RATE_LIMIT_WAIT = 0.01
#: the sandbox's limits made short (the burst window) or lifted (searches per second), so
#: that tests run at full speed; rate-limit tests inject the refusals they need
FAST_LIMITS: dict[str, Any] = {
    "rate_limit_interval_ms": FAST_RATE_INTERVAL_MS,
    "search_per_second": None,
}


class RunningHubSpot(Protocol):
    hubspot: HubSpotSandbox

    @property
    def hubspot_url(self) -> str: ...


class HubSpotHarness:
    key = "hubspot"
    pull_page_max = 100
    incremental_page_max = 200
    push_batch_max = 100
    missing_id = "999999999"  # company ids are numbers; this one is never given out
    sends_retry_after = True  # a 429 may carry Retry-After
    #: a private-app token does not expire, and the connector has no OAuth refresh
    can_refresh_tokens = False
    rejectable = ("validation", "duplicate")

    def __init__(
        self, sandbox: RunningHubSpot, field_map: Mapping[str, str | None] | None = None
    ) -> None:
        self.sandbox = sandbox
        self.hs = sandbox.hubspot
        self.field_map: dict[str, str | None] = dict(field_map or {})
        self.fmap = hubspot_mapping.field_map(self.field_map)
        self._record_errors: dict[str, str] = {}
        self.hs.configure_webhooks(client_secret=CLIENT_SECRET)
        self.hs.set_faults(**FAST_LIMITS)
        # the suite maps every default field: a portal where someone created address3 (a
        # new portal, the sandbox's default, has none: tests of that ask for it)
        self.hs.set_address3(True)

    def push_calls(self, updates: int, creates: int) -> int:
        """Batches per kind: updates by id, creates as upserts on the billing id."""
        return math.ceil(updates / self.push_batch_max) + math.ceil(creates / self.push_batch_max)

    # -- connectors
    def settings(self, **overrides: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "host": self.sandbox.hubspot_url,
            "request_timeout": 5.0,
            "max_attempts": 5,
            "backoff_base_seconds": 0.001,
            "rate_limit_wait_seconds": FAST_RATE_LIMIT_WAIT,
            "search_per_second": 0,  # no pacing: the sandbox's search limit is off too
            "clock_skew_ms": 0,
            "search_lag_seconds": 0,
        }
        settings.update(overrides)
        return settings

    def credentials(self, **overrides: str) -> dict[str, str]:
        """The private-app token and the app's client secret (for webhook signatures)."""
        creds = {"access_token": ACCESS_TOKEN, "client_secret": CLIENT_SECRET}
        creds.update(overrides)
        return {k: v for k, v in creds.items() if v}

    def static_credentials(self) -> dict[str, str]:
        """HubSpot's credentials never include a way to get a new token."""
        return self.credentials()

    def connector(self, **settings: Any) -> HubSpotConnector:
        field_map = settings.pop("field_map", self.field_map)
        credentials = settings.pop("credentials", None)
        gate: RateGate | None = settings.pop("gate", None)
        return HubSpotConnector(
            ConnectionConfig(
                connection_id="hubspot-test",
                credentials=credentials if credentials is not None else self.credentials(),
                settings=self.settings(**settings),
                field_map=field_map,
            ),
            gate=gate,
        )

    # -- the CRM, as a user
    def reset(self) -> None:
        self.hs.reset()
        self.hs.set_address3(True)
        self.hs.set_faults(**FAST_LIMITS)
        self._record_errors = {}

    def seed(self, count: int) -> list[str]:
        return self.hs.seed_companies(count)

    def properties(self, fields: CustomerFields) -> dict[str, str]:
        return hubspot_mapping.to_properties(fields, self.fmap)

    def create(self, fields: CustomerFields) -> str:
        return self.hs.create("companies", self.properties(fields))

    def edit(self, crm_id: str, fields: CustomerFields) -> None:
        self.hs.edit(crm_id, self.properties(fields))

    def read(self, crm_id: str) -> CustomerFields:
        return hubspot_mapping.to_fields(self.hs.read(crm_id)["properties"], self.fmap)

    def delete(self, crm_id: str) -> None:
        self.hs.archive(crm_id)

    def restore(self, crm_id: str) -> None:
        self.hs.restore(crm_id)

    def merge(self, winner: str, loser: str) -> str:
        return self.hs.merge(winner, loser)

    def set_faults(self, **faults: Any) -> None:
        self.hs.set_faults(**faults)

    def api_calls(self) -> int:
        return self.hs.api_calls()

    # -- knobs of the contract suite (see tests/connectors/harness.py)
    def change_at(self, crm_ids: Sequence[str], ms: int) -> None:
        self.hs.touch(crm_ids, ms=ms)

    def rate_limit(self, times: int, retry_after: float | None = None) -> InjectedFault:
        """Per-second limits (``SECONDLY``), as the search API answers them."""
        self.hs.set_faults(
            rate_limit_next=times, retry_after=retry_after, rate_limit_policy="SECONDLY"
        )
        # without Retry-After the connector waits its rate_limit_wait_seconds
        wait = retry_after if retry_after is not None else FAST_RATE_LIMIT_WAIT
        return InjectedFault("You have reached your secondly limit.", wait)

    def spend_allowance(self, after: int) -> InjectedFault:
        """The portal's daily allowance runs out after ``after`` more API calls."""
        self.hs.set_faults(daily_limit=self.hs.api.limits.used_today() + after)
        return InjectedFault("You have reached your daily limit.")

    def restore_allowance(self) -> None:
        """The portal's midnight passes (into a day with the usual allowance)."""
        self.hs.set_faults(daily_limit=None)
        self.hs.new_day()

    def server_errors(self, times: int) -> InjectedFault:
        self.hs.set_faults(server_error_next=times, server_error_status=500)
        return InjectedFault("internal error (injected by the sandbox)")

    def hang(self, times: int, seconds: float) -> None:
        self.hs.set_faults(hang_next=times, hang_seconds=seconds)

    def reject_record(self, key: str, kind: Literal["validation", "duplicate"]) -> InjectedFault:
        self._record_errors[key] = kind
        self.hs.set_faults(record_errors=dict(self._record_errors))
        if kind == "duplicate":
            return InjectedFault("A company with that value already exists")
        return InjectedFault(f"{key}: value was not valid (injected)")

    def expire_tokens(self) -> InjectedFault:
        self.hs.set_faults(expired_token=True)
        return InjectedFault("The OAuth token used to make this call expired")

    def webhook_requests(self, change: Callable[[], object]) -> list[WebhookRequest]:
        """Signed (v3) webhook deliveries, answered 204."""
        with WebhookReceiver("/hooks/hubspot/contract?x=1") as receiver:
            self.hs.configure_webhooks(url=receiver.url, enabled=True, client_secret=CLIENT_SECRET)
            try:
                change()
                if not self.hs.flush_webhooks(10):
                    raise TimeoutError("the sandbox did not deliver its webhooks")
            finally:
                self.hs.configure_webhooks(enabled=False, url=None)
            return list(receiver.requests)

    def tampered_webhooks(self, request: WebhookRequest) -> list[WebhookRequest]:
        """A changed body, URL or signature, and a correctly signed but stale request."""
        headers = dict(request.headers)
        names = {k.lower(): k for k in headers}
        sig, stamp = names["x-hubspot-signature-v3"], names["x-hubspot-request-timestamp"]
        body = request.body.replace(b'"attemptNumber":0', b'"attemptNumber":1', 1)
        if body == request.body:
            body = request.body + b" "
        forged = {
            **headers,
            sig: signature_v3("guess", "POST", request.url, request.body, headers[stamp]),
        }
        old = str(int(time.time() * 1000) - 10 * 60 * 1000)
        stale = {
            **headers,
            stamp: old,
            sig: signature_v3(CLIENT_SECRET, "POST", request.url, request.body, old),
        }
        return [
            WebhookRequest("POST", request.url, headers, body),
            WebhookRequest("POST", request.url + "&y=2", headers, request.body),
            WebhookRequest("POST", request.url, forged, request.body),
            WebhookRequest("POST", request.url, stale, request.body),
        ]


def make_harness(sandbox: Sandbox) -> HubSpotHarness:
    return HubSpotHarness(sandbox)
