"""The state one sync run carries through its steps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from connectors.base import Connector
from sync.decide import Policy
from sync.decision import NEW_ACCOUNT, PageDecision
from sync.fencing import Fence
from sync.plan import Plan, new_counters
from sync.settings import Settings

Progress = Callable[[str, dict[str, int]], None]


@dataclass
class Unapplied:
    """What a plan has shown and not applied, that a run's later steps would find in the
    store: so that a plan's contacts find the links its pull would have made, and its push
    step leaves the customers its pull decided alone, as a run's do. Empty in a run."""

    #: CRM id -> customer id, of the links the plan would make or keep
    links: dict[str, str] = field(default_factory=dict)
    #: customers the plan has decided on
    customers: set[str] = field(default_factory=set)
    #: customers the plan would create a CRM record for
    created: set[str] = field(default_factory=set)
    #: customers whose link the plan would end (a CRM delete or merge)
    unlinked: set[str] = field(default_factory=set)

    def note(self, decision: PageDecision) -> None:
        for record in decision.records:
            if record.failure is not None and record.push is None:
                continue  # nothing of it would be in the store
            if record.customer_id is not None:
                self.customers.add(record.customer_id)
            if record.link is not None and record.link.crm_id is not None:
                self.links[record.link.crm_id] = record.link.customer_id
            push = record.push
            if push is not None and push.crm_id is None:
                self.created.add(push.customer_id)
            move = record.move
            if move is not None and record.customer_id is not None:
                if move.state == "active" and move.crm_id is not None:
                    self.links[move.crm_id] = record.customer_id  # re-pointed at a survivor
                elif move.state != "active":
                    self.unlinked.add(record.customer_id)

    def accounts(self) -> dict[str, str]:
        """Customer id -> the CRM account / company the plan would link it to
        (:data:`~sync.decision.NEW_ACCOUNT`: one the run would create)."""
        planned = dict.fromkeys(self.created, NEW_ACCOUNT)
        planned.update({customer: crm_id for crm_id, customer in self.links.items()})
        return planned


@dataclass(frozen=True)
class ContactPolicy:
    """How a connection syncs secondary contacts: at all (``contacts`` setting), from the
    billing side too (the connector can write them), with communications (a mapped field)."""

    pull: bool = True
    push: bool = False
    communications: bool = False


@dataclass
class RunContext:
    """One run of one connection. ``plan`` is set in plan mode: decisions are shown in it
    instead of being applied (:func:`sync.apply.carry_out` is the one place that asks)."""

    engine: Engine
    settings: Settings
    connector: Connector
    policy: Policy
    run_id: str | None
    #: the organisation has other connections: billing changes made by this one are logged
    #: in the outbox for them
    fan_out: bool
    #: the connection had open dead-letter rows when the run began (else none to close)
    has_failures: bool = False
    #: customers whose push the CRM refused in this run: not pushed again in the same run
    refused: set[str] = field(default_factory=set)
    plan: Plan | None = None
    unapplied: Unapplied = field(default_factory=Unapplied)
    counters: dict[str, int] = field(default_factory=new_counters)
    progress: Progress | None = None
    #: the run's claim on its lock, checked in every commit (None: nothing to fence, e.g.
    #: an operator's foreground retry)
    fence: Fence | None = None
    #: a full run (a backfill): its page commits do not wait for PostgreSQL to flush them
    #: to disk (``synchronous_commit = off``). A page lost with a crash of the server is
    #: lost with its cursor, so the next run reads it again, as after a killed worker
    bulk: bool = False
    contacts: ContactPolicy = field(default_factory=ContactPolicy)
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def organisation_id(self) -> str:
        return self.policy.organisation_id

    @property
    def connection_id(self) -> str:
        return self.policy.connection_id

    def count(self, name: str, amount: int = 1) -> None:
        # a backfill's contacts are written on a thread of their own (sync.write_behind)
        with self._counting:
            self.counters[name] += amount

    def report(self, step: str) -> None:
        if self.progress is not None:
            self.progress(step, dict(self.counters))
