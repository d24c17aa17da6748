"""The HubSpot side of the connector contract suite: drives the sandbox as a CRM user would
(its Python control methods) and builds connectors pointed at it.

    with Sandbox(SandboxOptions()) as sb:
        harness = make_harness(sb)
        connector = harness.connector(max_attempts=3)

``connector()`` uses tiny back-off, a 5 s request time-out and ``clock_skew_ms=0`` (the
sandbox shares our clock). ``field_map=`` and ``credentials=`` are taken apart from the
other settings. Faults keep their sandbox names (``sandbox/hubspot/faults.py``); the
rate-limit interval is set to 20 ms on reset so 429s without ``Retry-After`` wait little.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from connectors.base import ConnectionConfig, CustomerFields
from connectors.hubspot import HubSpotConnector
from connectors.hubspot import mapping as hubspot_mapping
from sandbox.hubspot import HubSpotSandbox
from sandbox.server import Sandbox

ACCESS_TOKEN = "sandbox-private-app-token"
CLIENT_SECRET = "sandbox-client-secret"
FAST_RATE_INTERVAL_MS = 20


class RunningHubSpot(Protocol):
    hubspot: HubSpotSandbox

    @property
    def hubspot_url(self) -> str: ...


class HubSpotHarness:
    key = "hubspot"
    pull_page_max = 100
    incremental_page_max = 200
    push_batch_max = 100

    def __init__(
        self, sandbox: RunningHubSpot, field_map: Mapping[str, str | None] | None = None
    ) -> None:
        self.sandbox = sandbox
        self.hs = sandbox.hubspot
        self.field_map: dict[str, str | None] = dict(field_map or {})
        self.fmap = hubspot_mapping.field_map(self.field_map)
        self.hs.configure_webhooks(client_secret=CLIENT_SECRET)
        self.hs.set_faults(rate_limit_interval_ms=FAST_RATE_INTERVAL_MS)

    # -- connectors
    def settings(self, **overrides: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "host": self.sandbox.hubspot_url,
            "request_timeout": 5.0,
            "max_attempts": 5,
            "backoff_base_seconds": 0.001,
            "clock_skew_ms": 0,
        }
        settings.update(overrides)
        return settings

    def connector(self, **settings: Any) -> HubSpotConnector:
        field_map = settings.pop("field_map", self.field_map)
        credentials = settings.pop(
            "credentials", {"access_token": ACCESS_TOKEN, "client_secret": CLIENT_SECRET}
        )
        return HubSpotConnector(
            ConnectionConfig(
                connection_id="hubspot-test",
                credentials=credentials,
                settings=self.settings(**settings),
                field_map=field_map,
            )
        )

    # -- the CRM, as a user
    def reset(self) -> None:
        self.hs.reset()
        self.hs.set_faults(rate_limit_interval_ms=FAST_RATE_INTERVAL_MS)

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


def make_harness(sandbox: Sandbox) -> HubSpotHarness:
    return HubSpotHarness(sandbox)
