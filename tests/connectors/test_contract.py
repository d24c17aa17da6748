"""The connector contract (``connectors.testing``) run against both built-in connectors, on
the sandbox over real HTTP with the real client libraries (simple-salesforce over TLS,
hubspot-api-client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.testing import ContractSuite
from sandbox.server import Sandbox
from tests.connectors.harness_hubspot import HubSpotHarness
from tests.connectors.harness_salesforce import SalesforceHarness, running_sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # running_sandbox: Sandbox(SandboxOptions()), closing the clients before it stops
    with running_sandbox() as sb:
        yield sb


class TestSalesforceContract(ContractSuite):
    harness_class = SalesforceHarness

    @pytest.fixture
    def harness(self, sandbox: Sandbox) -> SalesforceHarness:
        return SalesforceHarness(sandbox)


class TestHubSpotContract(ContractSuite):
    harness_class = HubSpotHarness

    @pytest.fixture
    def harness(self, sandbox: Sandbox) -> HubSpotHarness:
        return HubSpotHarness(sandbox)
