"""The state one sync run carries through its steps, and the per-page work it collects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from connectors.base import Connector, RecordError
from sync.customer import FieldValue
from sync.match import MatchMode
from sync.plan import Plan, new_counters
from sync.settings import Settings
from sync.store.models import new_id

Progress = Callable[[str, dict[str, int]], None]


@dataclass
class RunContext:
    """One run of one connection. ``plan`` is set in plan mode: nothing is written."""

    engine: Engine
    settings: Settings
    connector: Connector
    organisation_id: str
    connection_id: str
    run_id: str | None
    directions: dict[str, str]
    match_mode: MatchMode
    create_policy: str
    push_creates: bool
    #: the organisation has other connections: billing changes made by this one are logged
    #: in the outbox for them
    fan_out: bool
    fields: tuple[str, ...]
    #: the connection had open dead-letter rows when the run began (else none to close)
    has_failures: bool = False
    #: customers whose push the CRM refused in this run: not pushed again in the same run
    refused: set[str] = field(default_factory=set)
    plan: Plan | None = None
    counters: dict[str, int] = field(default_factory=new_counters)
    progress: Progress | None = None

    @property
    def planning(self) -> bool:
        return self.plan is not None

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def report(self, step: str) -> None:
        if self.progress is not None:
            self.progress(step, dict(self.counters))

    def failure(
        self,
        direction: str,
        *,
        crm_id: str | None,
        customer_id: str | None,
        payload: dict[str, Any],
        kind: str,
        message: str,
        code: str = "",
    ) -> dict[str, Any]:
        """A dead-letter row for a record that failed (the rest of its page goes on)."""
        self.count("failed")
        return {
            "id": new_id(),
            "organisation_id": self.organisation_id,
            "connection_id": self.connection_id,
            "run_id": self.run_id,
            "direction": direction,
            "crm_id": crm_id,
            "customer_id": customer_id,
            "payload": payload,
            "error_kind": kind,
            "error_code": code,
            "error_message": message,
            "attempts": 1,
            "status": "open",
        }

    def push_failure(
        self,
        customer_id: str,
        crm_id: str | None,
        fields: dict[str, FieldValue],
        error: RecordError,
    ) -> dict[str, Any]:
        self.refused.add(customer_id)
        return self.failure(
            "push",
            crm_id=crm_id,
            customer_id=customer_id,
            payload={"fields": fields},
            kind=error.kind,
            code=error.code,
            message=error.message,
        )


@dataclass
class PageWork:
    """Writes collected while deciding one page, applied together in one transaction."""

    new_customers: list[dict[str, Any]] = field(default_factory=list)
    customer_updates: list[dict[str, Any]] = field(default_factory=list)
    new_links: list[dict[str, Any]] = field(default_factory=list)
    link_updates: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[tuple[str, list[str]]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    synced_crm_ids: list[str] = field(default_factory=list)
    synced_customer_ids: list[str] = field(default_factory=list)
