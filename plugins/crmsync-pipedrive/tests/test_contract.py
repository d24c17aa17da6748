"""crmsync's connector contract, from its kit, run against the Pipedrive emulator."""

from __future__ import annotations

from harness import PipedriveHarness

from connectors.testing import ContractSuite


class TestPipedriveContract(ContractSuite):
    harness_class = PipedriveHarness
