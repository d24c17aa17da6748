"""Applying a decision: push its CRM writes, then write its rows, in the caller's transaction.

:func:`carry_out` is the one place that asks whether a run is a plan: a plan shows the
decision (:meth:`sync.plan.Plan.show`), a run applies it. Applying pushes the decision's
CRM writes in batches (results matched by billing id), turns each record's decision and
push result into rows at the store's edge, writes them in bulk and moves the cursor. A
record the CRM refuses becomes a dead-letter row; its base stays, so it is pushed again.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from connectors.base import CustomerPush, PushResult, RecordError
from sync.contact_sync import ContactPushesMade, apply_contacts
from sync.context import RunContext
from sync.decision import (
    Audit,
    ConflictOpen,
    CrmPush,
    Failure,
    LinkMove,
    LinkWrite,
    PageDecision,
    RecordDecision,
)
from sync.pushes_made import PushesMadeBy
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.convert import changed_columns, conflict_row, new_customer_row
from sync.store.models import SyncRun, new_id

Table = Literal[
    "new_customer", "customer", "new_link", "link", "conflict", "failure", "outbox", "audit"
]
_TABLES: tuple[Table, ...] = (
    "new_customer",
    "customer",
    "new_link",
    "link",
    "conflict",
    "failure",
    "outbox",
    "audit",
)
log = logging.getLogger(__name__)
_NO_RESULT = RecordError("other", "NO_RESULT", "the CRM returned no result for this record")
#: in a push failure's payload: the billing id the CRM refused in its external-id field
WRITE_BACK = "billing_id"


def carry_out(
    ctx: RunContext,
    session: Session,
    decision: PageDecision,
    made: PushesMade | None = None,
    *,
    isolate: bool = False,
) -> None:
    """Apply a page's decision, or in plan mode show it instead: the one place that asks.
    ``made`` and ``isolate`` are :func:`apply`'s."""
    if ctx.plan is not None:
        ctx.plan.show(decision)
        ctx.unapplied.note(decision)
        _count_planned(ctx, decision)
        return
    apply(ctx, session, decision, made, isolate=isolate)


def _count_planned(ctx: RunContext, decision: PageDecision) -> None:
    """A plan's counters: what applying the decision would count (the CRM's answers
    aside)."""
    for record in decision.records:
        push = record.push
        planned = () if push is None else ("crm_created" if push.crm_id is None else "pushed",)
        _count(ctx, (*record.counts, *planned), len(record.conflicts))
    contacts = decision.contacts
    if contacts is None:
        return
    ctx.count("contacts", len(contacts.attach) + len(contacts.change))
    ctx.count("failed", len(contacts.failures) + len(contacts.taken))
    ctx.count("contacts_flagged", len(contacts.flag))
    adopted = contacts.adoptions
    ctx.count("conflicts_opened", len(contacts.conflicts) + sum(len(a.conflicts) for a in adopted))
    ctx.count("contacts_adopted", len(adopted))
    for contact in contacts.plain_pushes():
        if contact.fields:
            created = contact.crm_id is None
            ctx.count("contacts_crm_created" if created else "contacts_pushed")


def apply(
    ctx: RunContext,
    session: Session,
    decision: PageDecision,
    made: PushesMade | None = None,
    *,
    isolate: bool = False,
) -> None:
    """Push, then write, a page's decision, and move its cursor (the caller commits).

    Pushes already in ``made`` (this page's, from an attempt the store refused) are not
    made again. Without ``isolate`` a store refusal (:data:`STORE_REFUSALS`) is raised as
    it is: a sync of the same connection beside this one (a webhook's) may have linked or
    created one of these records first, and the caller decides the page again on what is
    there now. With ``isolate`` the records the store refuses are found by bisection and go
    to the dead letter with the store's reason; the rest of the page is written."""
    results = _push(ctx, decision.pushes(), made if made is not None else PushesMade())
    if isolate:
        rows = _write_isolated(ctx, session, decision.records, results)
    else:
        rows = _Rows()
        for record in decision.records:
            rows.add(ctx, record, results)
        _write(ctx, session, rows)
    for name, amount in rows.counts.items():
        ctx.count(name, amount)
    contacts = decision.contacts
    if contacts is not None:
        if contacts.failures:
            repo.record_failures(session, [failure_row(ctx, f) for f in contacts.failures])
            ctx.count("failed", len(contacts.failures))
        apply_contacts(ctx, session, contacts, made.contacts if made else None)
    if ctx.has_failures:
        repo.resolve_failures_for(session, ctx.connection_id, "pull", rows.synced)
        repo.resolve_failures_for(session, ctx.connection_id, "push", rows.pushed)
    if decision.cursor is not None:
        repo.set_cursor(session, ctx.connection_id, decision.cursor.object, decision.cursor.value)
    save_counters(ctx, session)


def _count(ctx: RunContext, counts: Iterable[str], conflicts: int) -> None:
    for name in counts:
        ctx.count(name)
    ctx.count("conflicts_opened", conflicts)


def save_counters(ctx: RunContext, session: Session) -> None:
    """The run's counters so far, on its row (committed with the page)."""
    if ctx.run_id is None:
        return
    run = session.get(SyncRun, ctx.run_id)
    if run is not None:
        run.counters = dict(ctx.counters)
        run.api_calls = ctx.connector.api_calls


# --- pushing -------------------------------------------------------------------------------


class PushesMade(PushesMadeBy[CrmPush]):
    """The CRM writes one page has made, by customer. When the store refuses the page's
    rows and the page is decided again, a push already made is not made twice: the same
    fields for the same record take the earlier result, and a CRM record once created for
    a customer is never created again."""

    def __init__(self) -> None:
        super().__init__(lambda push: push.customer_id)
        #: and the contacts it has pushed (a contact created once is never created again)
        self.contacts = ContactPushesMade()


def _push(ctx: RunContext, pushes: list[CrmPush], made: PushesMade) -> dict[str, PushResult]:
    """Push in batches; results are matched by billing id, never by position."""
    results = {p.customer_id: r for p in pushes if (r := made.result(p)) is not None}
    todo = [p for p in pushes if p.customer_id not in results]
    if not todo:
        return results
    before = ctx.connector.api_calls
    answers = ctx.connector.push_customers(
        [CustomerPush(p.customer_id, p.crm_id, dict(p.fields), p.write_billing_id) for p in todo]
    )
    ctx.count("calls_push", ctx.connector.api_calls - before)
    by_customer = {answer.billing_id: answer for answer in answers}
    for push in todo:
        answer = by_customer.get(push.customer_id)
        if answer is not None:
            made.add(push, answer)
            results[push.customer_id] = answer
    return results


# --- rows at the store's edge --------------------------------------------------------------


class _Rows:
    """Records' rows at the store's edge, by table, and what they count once written."""

    def __init__(self) -> None:
        self.tables: dict[Table, list[Any]] = {table: [] for table in _TABLES}
        self.counts: Counter[str] = Counter()
        #: CRM ids that synced (their pull failures close), customers whose push succeeded
        self.synced: list[str] = []
        self.pushed: list[str] = []

    def extend(self, other: _Rows) -> None:
        for table, rows in other.tables.items():
            self.tables[table].extend(rows)
        self.counts.update(other.counts)
        self.synced.extend(other.synced)
        self.pushed.extend(other.pushed)

    def add(
        self, ctx: RunContext, record: RecordDecision, results: Mapping[str, PushResult]
    ) -> None:
        tables, counts = self.tables, self.counts
        for name in record.counts:
            counts[name] += 1
        if record.conflicts:
            counts["conflicts_opened"] += len(record.conflicts)
        if record.synced and record.crm_id is not None:
            self.synced.append(record.crm_id)
        if record.new_customer is not None:
            tables["new_customer"].append(new_customer_row(record.new_customer))
        if record.change is not None:
            columns = changed_columns(record.change.customer, record.change.changes)
            tables["customer"].append({"id": record.change.customer.id, **columns})
        link = record.link
        if record.push is not None:
            link = self._pushed(ctx, record.push, results.get(record.push.customer_id), link)
        if link is not None:
            table, row = _link_row(ctx, link)
            tables[table].append(row)
        if record.move is not None:
            tables["link"].append(_move_row(record.move))
        for conflict in record.conflicts:
            tables["conflict"].append(_conflict_row(ctx, conflict))
        if record.failure is not None:
            tables["failure"].append(failure_row(ctx, record.failure))
        if ctx.fan_out and record.customer_id is not None:
            outbox = list(record.outbox)
            if record.new_customer is not None:
                fields = record.new_customer.fields
                outbox = sorted(k for k, v in fields.items() if v not in (None, ""))
            if outbox:
                tables["outbox"].append((record.customer_id, outbox))
        for audit in record.audits:
            tables["audit"].append(_audit_row(ctx, audit))

    def _pushed(
        self,
        ctx: RunContext,
        push: CrmPush,
        result: PushResult | None,
        link: LinkWrite | None,
    ) -> LinkWrite | None:
        """The link to write once the push has its result: on success the pushed values
        join its base (a create makes the link); on refusal the base stays and a
        dead-letter row says why."""
        if result is None or (result.error is None and result.crm_id is None):
            result = PushResult(push.customer_id, push.crm_id, _NO_RESULT)
        if result.error is not None:
            ctx.refused.add(push.customer_id)
            error = result.error
            payload: dict[str, Any] = {"fields": dict(push.fields)}
            if push.write_billing_id:
                # the id the record's external-id field was refused: a retry writes it
                payload[WRITE_BACK] = push.customer_id
            failure = Failure(
                "push",
                push.crm_id,
                push.customer_id,
                payload,
                error.kind,
                error.message,
                error.code,
            )
            self.tables["failure"].append(failure_row(ctx, failure))
            self.counts["failed"] += 1
            return link if push.crm_id is not None else None
        self.pushed.append(push.customer_id)
        base = {**push.base, **push.fields}
        if push.crm_id is not None:
            self.counts["pushed"] += 1
            if link is not None:
                return replace(link, base=base)
            return LinkWrite(push.link_id, push.customer_id, push.crm_id, base=base)
        self.counts["crm_created"] += 1
        if push.set_external_id:
            self.tables["customer"].append({"id": push.customer_id, "external_id": result.crm_id})
        return LinkWrite(
            push.link_id,
            push.customer_id,
            result.crm_id,
            base=base,
            new=True,
            crm_last={},
            billing_last={},
            state="active",
        )


def _link_row(ctx: RunContext, link: LinkWrite) -> tuple[Table, dict[str, Any]]:
    if link.new:
        return "new_link", {
            "id": link.id,
            "organisation_id": ctx.organisation_id,
            "connection_id": ctx.connection_id,
            "customer_id": link.customer_id,
            "crm_id": link.crm_id,
            "base": link.base,
            "crm_last": link.crm_last or {},
            "billing_last": link.billing_last or {},
            "crm_modified_at": link.crm_modified_at,
            "state": link.state or "active",
        }
    row: dict[str, Any] = {"id": link.id, "base": link.base}
    for column in ("crm_last", "billing_last", "crm_modified_at", "state"):
        value = getattr(link, column)
        if value is not None:
            row[column] = value
    return "link", row


def _move_row(move: LinkMove) -> dict[str, Any]:
    row = {"id": move.id, "state": move.state}
    if move.crm_id is not None:
        row["crm_id"] = move.crm_id
    if move.merged_into is not None:
        row["merged_into"] = move.merged_into
    return row


def _conflict_row(ctx: RunContext, conflict: ConflictOpen) -> dict[str, Any]:
    return conflict_row(ctx.organisation_id, ctx.connection_id, conflict)


def _audit_row(ctx: RunContext, audit: Audit) -> dict[str, Any]:
    return {
        "organisation_id": ctx.organisation_id,
        "actor": f"sync:{ctx.connection_id}",
        "action": audit.action,
        "subject": audit.customer_id,
        "detail": audit.detail,
    }


def failure_row(ctx: RunContext, failure: Failure) -> dict[str, Any]:
    """A dead-letter row for a record that failed (the rest of its page goes on). What
    the CRM sent is kept as far as the store can hold it (:func:`storable`)."""
    return {
        "id": new_id(),
        "organisation_id": ctx.organisation_id,
        "connection_id": ctx.connection_id,
        "run_id": ctx.run_id,
        "direction": failure.direction,
        "crm_id": failure.crm_id,
        "customer_id": failure.customer_id,
        "payload": storable(failure.payload),
        "error_kind": failure.kind,
        "error_code": storable(failure.code)[:64],
        "error_message": storable(failure.message),
        "attempts": 1,
        "status": "open",
    }


#: what no store column can hold: NUL (PostgreSQL text and jsonb refuse it) and lone
#: surrogates (not encodable as UTF-8)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` (JSON) with each character no store can hold replaced by U+FFFD, so that
    the dead-letter row of a record refused for holding one can itself be written."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


# --- writing -------------------------------------------------------------------------------


def _write(ctx: RunContext, session: Session, rows: _Rows) -> None:
    """Write records' rows in bulk, table by table (customers before their links)."""
    tables, organisation_id = rows.tables, ctx.organisation_id
    repository.insert_customers(session, organisation_id, tables["new_customer"])
    repository.update_customers(session, organisation_id, tables["customer"])
    repo.insert_links(session, tables["new_link"])
    repo.update_links(session, tables["link"])
    repo.insert_conflicts(session, tables["conflict"])
    repo.record_failures(session, tables["failure"])
    repository.add_outbox_entries(
        session, organisation_id, tables["outbox"], origin_connection_id=ctx.connection_id
    )
    repo.add_audits(session, tables["audit"])


#: what the store refuses a record's rows with: a value it cannot hold (psycopg's
#: DataError: a NUL, a value too long, a bad JSON escape), a constraint (IntegrityError:
#: unique, check, foreign key), or text the driver cannot encode (a lone surrogate)
STORE_REFUSALS: tuple[type[Exception], ...] = (DataError, IntegrityError, UnicodeEncodeError)


def _write_isolated(
    ctx: RunContext,
    session: Session,
    records: Sequence[RecordDecision],
    results: Mapping[str, PushResult],
) -> _Rows:
    """Write records' rows, leaving out the records the store refuses, which go to the dead
    letter with the store's reason; returns the rows written. The dead-letter rows are
    written once, after the others (a try the store refuses writes none)."""
    rows = _bisect(ctx, session, records, results)
    failures, rows.tables["failure"] = rows.tables["failure"], []
    repo.record_failures(session, failures)
    return rows


def _bisect(
    ctx: RunContext,
    session: Session,
    records: Sequence[RecordDecision],
    results: Mapping[str, PushResult],
) -> _Rows:
    """A group the store refuses (in a savepoint) is split in two and each half tried
    again, down to single records: k bad records of n cost about k·log2(n) tries."""
    rows = _Rows()
    for record in records:
        rows.add(ctx, record, results)
    failures, rows.tables["failure"] = rows.tables["failure"], []
    try:
        with session.begin_nested():
            _write(ctx, session, rows)
    except STORE_REFUSALS as error:
        if len(records) > 1:
            half = len(records) // 2
            written = _bisect(ctx, session, records[:half], results)
            written.extend(_bisect(ctx, session, records[half:], results))
            return written
        failure = _refused(records[0], error)
        log.warning(
            "record refused by the store",
            extra={"crm_id": failure.crm_id, "customer_id": failure.customer_id},
        )
        refused = _Rows()
        refused.tables["failure"].append(failure_row(ctx, failure))
        refused.counts["failed"] += 1
        return refused
    rows.tables["failure"] = failures
    return rows


def _refused(record: RecordDecision, error: Exception) -> Failure:
    """The dead-letter entry of a record whose rows the store refused, in its words."""
    original = getattr(error, "orig", None) or error
    reason = str(original).strip() or type(original).__name__
    code = getattr(original, "sqlstate", None) or type(original).__name__
    fields: dict[str, Any] = {}
    if record.new_customer is not None:
        fields = dict(record.new_customer.fields)
    elif record.change is not None:
        fields = dict(record.change.changes)
    elif record.push is not None:
        fields = dict(record.push.fields)
    # a record of the CRM is retried by its CRM id; one only billing knows, by its customer
    direction: Literal["pull", "push"] = "pull" if record.crm_id is not None else "push"
    payload = {"fields": fields, "refused_by": "store"}
    return Failure(direction, record.crm_id, record.customer_id, payload, "store", reason, code)
