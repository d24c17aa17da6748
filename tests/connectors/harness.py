"""What the connector contract suite needs from each CRM's test harness.

Each connector's tests provide one ``Harness`` (``harness_salesforce.py``,
``harness_hubspot.py``) that drives the sandbox as a CRM user would, so the contract suite
(``test_contract.py``) runs the same tests against both connectors.
"""

from __future__ import annotations

from typing import Any, Protocol

from connectors.base import Connector, CustomerFields


class Harness(Protocol):
    key: str
    #: records per page of a full pull, and per push batch, at the CRM's maximum
    pull_page_max: int
    incremental_page_max: int
    push_batch_max: int

    def connector(self, **settings: Any) -> Connector:
        """A fresh connector for the sandbox, with settings overrides."""

    def reset(self) -> None:
        """Empty the CRM, clear faults and request counts."""

    def seed(self, count: int) -> list[str]:
        """Create ``count`` realistic records (with contacts); their CRM ids, in order."""

    def create(self, fields: CustomerFields) -> str:
        """Create one record as a CRM user would, from customer fields; its id."""

    def edit(self, crm_id: str, fields: CustomerFields) -> None:
        """Change a record as a CRM user would (customer field names)."""

    def read(self, crm_id: str) -> CustomerFields:
        """The record as customer fields, read through the sandbox's control API."""

    def delete(self, crm_id: str) -> None: ...
    def restore(self, crm_id: str) -> None: ...
    def merge(self, winner: str, loser: str) -> str:
        """Merge ``loser`` into ``winner``; the surviving id."""

    def set_faults(self, **faults: Any) -> None:
        """Inject faults (names as the sandbox's control API takes them)."""

    def api_calls(self) -> int:
        """Requests the sandbox served on the CRM API (not the control API) since reset."""
