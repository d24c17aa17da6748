"""The sync engine: one function syncs one connection.

:func:`sync_connection` reads top to bottom as DESIGN.md's steps:

1. pull the CRM's accounts / companies changed since the cursor (every one on a full run),
   page by page;
2. per page: link each record by external ID, three-way merge it against its link's base
   (the match rule on a first link), apply billing-side changes in bulk, push the
   billing-side winners to the CRM in batches, update the bases, and commit the page with
   its cursor — so a run killed anywhere resumes after its last committed page;
3. pull the CRM's contacts into the customers' secondary contacts, the same way
   (three-way merge per contact field, ``sync.contact_sync``);
4. push the billing side's own changes (the outbox, creates included) in batches;
5. push the billing side's contact changes (creates under the linked account / company);
6. record the run: trigger, counters, duration, API calls, error.

Nothing here knows whether Celery, a webhook or an operator started it. In plan mode the
same steps run with nothing written anywhere and return what they would do.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connectors.base import (
    COMMUNICATIONS_SETTING,
    Connector,
    ContactWriter,
    CrmContact,
    CrmCustomer,
    MergeReader,
    Page,
    RateGate,
    syncs_contacts,
)
from connectors.calls import LocalRateGate
from connectors.errors import ConnectorError, DailyLimitExceeded
from sync.connections import (
    limit_error,
    limit_pause,
    note_api_usage,
    open_connector,
    pause_for_limit,
    schedule_next,
)
from sync.context import ContactPolicy, Progress, RunContext
from sync.decide import Policy
from sync.decision import CursorMove
from sync.errors import NotFound, SyncError
from sync.fencing import Fence, StaleRun
from sync.gc_pacing import paced_collections
from sync.pages import contact_push_page, contacts_page, push_page, sync_page
from sync.plan import Plan
from sync.push import outbox_start, pin_outbox_start, push_billing_changes
from sync.run_failures import note_run_end, recorded_if_it_cannot_start
from sync.schema import require_current_store
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import ConnectionRow, SyncRun, utcnow
from sync.write_behind import PageWriter, contacts_writer, customers_writer, writes_behind

CUSTOMERS = "customers"
CONTACTS = "contacts"
#: records per committed engine page: connector pages are grouped up to this size so that
#: a 100-record HubSpot page does not cost a transaction of its own
COMMIT_EVERY = 1000
#: a full run's engine pages of contacts: fewer, larger transactions (a page's fixed round
#: trips — its lookups, its COPY, cursor, counters and commit — cost more than its rows on
#: a busy machine); a killed run reads at most this many contacts again
BULK_CONTACTS_EVERY = 5000

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RunResult:
    """What a run did (or, in plan mode, would do)."""

    run_id: str | None
    status: str
    counters: dict[str, int]
    api_calls: int
    duration_seconds: float
    error: str | None = None
    plan: Plan | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sync_connection(
    engine: Engine,
    settings: Settings,
    connection_id: str,
    *,
    trigger: str = "operator",
    full: bool = False,
    plan: bool = False,
    gate: RateGate | None = None,
    progress: Progress | None = None,
    connector: Connector | None = None,
    fence: Fence | None = None,
) -> RunResult:
    """Sync one connection in both directions; see the module docstring for the steps.
    ``fence`` is the caller's claim on the connection's lock, checked at every commit."""
    ctx = _start_run(
        engine,
        settings,
        connection_id,
        trigger=trigger,
        scope="connection",
        full=full,
        plan=plan,
        gate=gate,
        progress=progress,
        connector=connector,
        fence=fence,
    )

    ctx.bulk = full

    def steps() -> None:
        outbox_at_start = outbox_start(ctx)
        with _calls(ctx, "calls_pull"):
            _pull_customers(ctx, full=full)
        with _calls(ctx, "calls_contacts"):
            _pull_contacts(ctx, full=full)
        push_billing_changes(ctx, full=full, outbox_at_start=outbox_at_start)
        _push_contacts(ctx)

    return _run(ctx, steps)


def sync_records(
    engine: Engine,
    settings: Settings,
    connection_id: str,
    *,
    crm_ids: Sequence[str] = (),
    customer_ids: Sequence[str] = (),
    merges: Mapping[str, str] | None = None,
    trigger: str = "webhook",
    gate: RateGate | None = None,
    connector: Connector | None = None,
    fence: Fence | None = None,
) -> RunResult:
    """Sync only the named CRM records and billing customers, now: for webhooks, for
    ``crmsync resync`` and for retrying the dead letter. The cursors do not move.

    ``merges`` maps a merged-away CRM id to its survivor when the caller knows it (a merge
    webhook), since a record read by id after a merge only shows as deleted."""
    ctx = _start_run(
        engine,
        settings,
        connection_id,
        trigger=trigger,
        scope="records",
        gate=gate,
        connector=connector,
        fence=fence,
    )

    connector = ctx.connector
    # a record read with those merged into it (Salesforce): a webhook names only a merge's
    # master, and the losers' links follow it now, as on the next incremental pull
    read = (
        connector.pull_customers_with_merged
        if isinstance(connector, MergeReader)
        else connector.pull_customers_by_ids
    )

    def steps() -> None:
        ids = list(dict.fromkeys(crm_ids))
        for start in range(0, len(ids), COMMIT_EVERY):
            records = read(ids[start : start + COMMIT_EVERY])
            sync_page(ctx, [_with_merge(r, merges or {}) for r in records])
        customers = list(dict.fromkeys(customer_ids))
        for start in range(0, len(customers), COMMIT_EVERY):
            push_page(ctx, customers[start : start + COMMIT_EVERY])
            _push_contacts(ctx, customers[start : start + COMMIT_EVERY])

    return _run(ctx, steps)


def _run(ctx: RunContext, steps: Callable[[], None]) -> RunResult:
    """Run a sync's steps and record how the run ended, on its row and in what it returns:
    the one wrapper of every run (a connection's, or named records'). Every run ends with a
    status and a reason, never a traceback, whatever a CRM sends:

    - ``succeeded``;
    - ``paused``: the CRM's daily allowance is spent; the connection waits for it;
    - ``interrupted``: the run's lock was lost (another worker runs the connection now), or
      the process is stopping (then the exception goes on: it is the process's to handle);
    - ``failed``: the CRM or the domain refused (``ConnectorError``, ``SyncError``), or
      anything else went wrong: the reason is recorded, and for an error that names no
      refusal (a bug of ours) the traceback goes to the log, for a developer. The
      connection's failure is opened in the dead letter (:mod:`sync.run_failures`), and
      resolved by the next run of the whole connection that succeeds.

    A record that fails never ends a run: it is in the dead letter (:mod:`sync.pages`)."""
    started = time.monotonic()
    try:
        with paced_collections():
            steps()
    except DailyLimitExceeded as error:
        # not a failure: the connection pauses until the allowance returns (DESIGN.md)
        return _finish_run(
            ctx, started, "paused", limit_error(error.until, str(error)), limit=error
        )
    except StaleRun as error:
        # another worker holds the connection now: this run stops, its last page unwritten
        return _finish_run(ctx, started, "interrupted", str(error))
    except (ConnectorError, SyncError) as error:
        reason = f"{type(error).__name__}: {error}"
        return _finish_run(ctx, started, "failed", reason, cause=error)
    except Exception as error:
        log.exception("run failed on an unexpected error")
        return _finish_run(ctx, started, "failed", _reason(error), cause=error)
    except BaseException as error:
        _finish_run(ctx, started, "interrupted", f"the process stopped ({type(error).__name__})")
        raise
    return _finish_run(ctx, started, "succeeded", None)


def _reason(error: BaseException) -> str:
    """An unexpected error as the reason a run failed: its kind and its first line (a
    database error's statement and parameters, which may hold a CRM's values, stay out)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _with_merge(record: CrmCustomer, merges: Mapping[str, str]) -> CrmCustomer:
    if record.deleted and not record.merged_into and record.id in merges:
        return replace(record, merged_into=merges[record.id])
    return record


# --- the steps -----------------------------------------------------------------------------


def _pull_customers(ctx: RunContext, *, full: bool) -> None:
    cursor = None if full else _cursor(ctx, CUSTOMERS)
    pages = _grouped(ctx.connector.pull_customers(cursor, full=full))
    behind = None
    if writes_behind(ctx):
        with transaction(ctx.engine) as session:
            empty = not repo.has_customers(session, ctx.organisation_id)
        behind = customers_writer(ctx, empty_store=empty)
    _write_pages(ctx, pages, CUSTOMERS, "pull", lambda r, c: sync_page(ctx, r, c), behind)


def _write_pages(
    ctx: RunContext,
    pages: Iterable[tuple[list[T], str | None]],
    obj: str,
    step: str,
    write: Callable[[list[T], CursorMove | None], None],
    behind: PageWriter[Any] | None,
) -> None:
    """Each engine page of a pull written with its cursor, by ``write`` or, when given,
    written behind (:mod:`sync.write_behind`); the run's progress reported after each."""
    each = behind.page if behind is not None else write
    with behind if behind is not None else nullcontext():
        for items, page_cursor in pages:
            each(items, _move(obj, page_cursor))
            ctx.report(step)


@contextmanager
def _calls(ctx: RunContext, counter: str) -> Iterator[None]:
    """Count the API calls a step makes (its pushes are counted as ``calls_push``)."""
    before, pushed = ctx.connector.api_calls, ctx.counters["calls_push"]
    try:
        yield
    finally:
        pushes = ctx.counters["calls_push"] - pushed
        ctx.count(counter, ctx.connector.api_calls - before - pushes)


def _pull_contacts(ctx: RunContext, *, full: bool) -> None:
    cursor = None if full else _cursor(ctx, CONTACTS)
    with transaction(ctx.engine) as session:
        # the first pull of a connection's contacts only inserts (a pull returns each
        # contact once): a plain bulk insert, without the upsert's conflict handling
        fresh = not repo.has_crm_contacts(session, ctx.connection_id)
    size = BULK_CONTACTS_EVERY if full else COMMIT_EVERY
    pages = _grouped(ctx.connector.pull_contacts(cursor, full=full), size)
    behind = contacts_writer(ctx) if fresh and writes_behind(ctx) else None

    def write(contacts: list[CrmContact], move: CursorMove | None) -> None:
        contacts_page(ctx, contacts, move, fresh=fresh)

    _write_pages(ctx, pages, CONTACTS, "contacts", write, behind)


def _push_contacts(ctx: RunContext, customer_ids: Sequence[str] | None = None) -> None:
    """Push the billing side's pending contact changes (of ``customer_ids`` only, when
    given), a chunk per commit."""
    if not (ctx.contacts.pull and ctx.contacts.push):
        return
    after = ""
    while True:
        last = contact_push_page(ctx, after=after, limit=COMMIT_EVERY, customer_ids=customer_ids)
        if last is None:
            return
        after = last
        ctx.report("contacts")


def _move(obj: str, cursor: str | None) -> CursorMove | None:
    return CursorMove(obj, cursor) if cursor is not None else None


# --- run bookkeeping -----------------------------------------------------------------------


def _start_run(
    engine: Engine,
    settings: Settings,
    connection_id: str,
    *,
    trigger: str,
    scope: str,
    full: bool = False,
    plan: bool = False,
    gate: RateGate | None = None,
    progress: Progress | None = None,
    connector: Connector | None = None,
    fence: Fence | None = None,
) -> RunContext:
    """The run's context; a run (not a plan) is recorded as running. A store behind the
    code's migrations is refused before anything is recorded; a run that cannot start (its
    connector cannot be made) is recorded as failed, with the connection's failure."""
    require_current_store(engine)
    with recorded_if_it_cannot_start(
        engine, connection_id, trigger=trigger, scope=scope, full=full, plan=plan
    ):
        return _open_run(
            engine,
            settings,
            connection_id,
            trigger=trigger,
            scope=scope,
            full=full,
            plan=plan,
            gate=gate,
            progress=progress,
            connector=connector,
            fence=fence,
        )


def _open_run(
    engine: Engine,
    settings: Settings,
    connection_id: str,
    *,
    trigger: str,
    scope: str,
    full: bool,
    plan: bool,
    gate: RateGate | None,
    progress: Progress | None,
    connector: Connector | None,
    fence: Fence | None,
) -> RunContext:
    with transaction(engine) as session:
        row = repo.get_connection(session, connection_id)
        if row is None:
            raise NotFound(f"no connection {connection_id}")
        run_id = (
            None if plan else _record_run(session, row, trigger=trigger, scope=scope, full=full)
        )
        gate = _gate_within_limit(row, gate)
        if connector is None:
            connector = open_connector(settings, row, gate=gate)
        policy = _policy(row, connector)
        contacts = _contact_policy(row, connector)
        fan_out = repo.count_connections(session, row.organisation_id) > 1
        has_failures = repo.has_open_failures(session, row.id)
    return RunContext(
        engine=engine,
        settings=settings,
        connector=connector,
        policy=policy,
        run_id=run_id,
        fan_out=fan_out,
        has_failures=has_failures,
        plan=Plan() if plan else None,
        progress=progress,
        fence=fence,
        contacts=contacts,
    )


def _record_run(
    session: Session, row: ConnectionRow, *, trigger: str, scope: str, full: bool
) -> str:
    """The run, recorded as running (the connection's earlier runs of this scope still
    marked running are interrupted); its id."""
    repo.mark_interrupted_runs(session, row.id, scope)
    run = repo.add_run(session, row, trigger=trigger, scope=scope, full=full, plan=False)
    # until the connection's first push is done, records this run links are walked
    # past by it: pin where that push reads the outbox from (see outbox_start)
    pin_outbox_start(session, row.organisation_id, row.id)
    return run.id


def _gate_within_limit(row: ConnectionRow, gate: RateGate | None) -> RateGate | None:
    """Paused by the CRM's daily limit: the gate refuses before any call is made, so a run
    started anyway (an operator's command) burns none."""
    pause = limit_pause(row)
    if pause is None:
        return gate
    gate = gate or LocalRateGate()
    gate.suspend(*pause)
    return gate


def _policy(row: ConnectionRow, connector: Connector) -> Policy:
    return Policy(
        organisation_id=row.organisation_id,
        connection_id=row.id,
        fields=tuple(connector.mapped_fields),
        directions=dict(row.directions),
        match_mode="normalized" if row.match_mode == "normalized" else "exact",
        create_policy=row.create_policy,
        push_creates=row.push_creates,
    )


def _contact_policy(row: ConnectionRow, connector: Connector) -> ContactPolicy:
    return ContactPolicy(
        pull=syncs_contacts(row.settings or {}),
        push=connector.capabilities.contact_push and isinstance(connector, ContactWriter),
        communications=bool((row.settings or {}).get(COMMUNICATIONS_SETTING)),
    )


def _finish_run(
    ctx: RunContext,
    started: float,
    status: str,
    error: str | None,
    *,
    limit: DailyLimitExceeded | None = None,
    cause: BaseException | None = None,
) -> RunResult:
    duration = time.monotonic() - started
    api_calls = ctx.connector.api_calls
    if ctx.run_id is not None:
        with transaction(ctx.engine) as session:
            run = session.get(SyncRun, ctx.run_id)
            if run is not None:
                run.status = status
                run.counters = dict(ctx.counters)
                run.api_calls = api_calls
                run.finished_at = utcnow()
                run.duration_seconds = duration
                run.error = error
                note_run_end(session, run, error, cause)
            connection = repo.get_connection(session, ctx.connection_id)
            if connection is not None:
                note_api_usage(connection, ctx.connector.api_usage)
                if status == "succeeded":
                    schedule_next(connection)
                if limit is not None:
                    pause_for_limit(connection, limit.until, str(limit))
    return RunResult(
        run_id=ctx.run_id,
        status=status,
        counters=dict(ctx.counters),
        api_calls=api_calls,
        duration_seconds=duration,
        error=error,
        plan=ctx.plan,
    )


def _cursor(ctx: RunContext, obj: str) -> str | None:
    with transaction(ctx.engine) as session:
        return repo.get_cursor(session, ctx.connection_id, obj)


def _grouped(
    pages: Iterable[Page[T]], size: int = COMMIT_EVERY
) -> Iterator[tuple[list[T], str | None]]:
    """Connector pages grouped into engine pages of about ``size`` records,
    each with the cursor of its last connector page. The next engine page is fetched whole
    while the current one is merged and written: grouping happens on the pull's thread, so
    a 1,000-record page of 100-record CRM pages is ready when the writer wants it (one
    connector page ahead left the writer waiting out most of the next page's calls)."""
    return _prefetched(_batches(pages, size))


def _batches(pages: Iterable[Page[T]], size: int) -> Iterator[tuple[list[T], str | None]]:
    batch: list[T] = []
    cursor: str | None = None
    seen = False
    for page in pages:
        batch.extend(page.records)
        cursor, seen = page.cursor, True
        if len(batch) >= size:
            yield batch, cursor
            batch, seen = [], False
    if batch or (seen and cursor is not None):
        yield batch, cursor


class _PullFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _prefetched(pages: Iterable[T]) -> Iterator[T]:
    """Iterate ``pages`` one page ahead on a helper thread, so the CRM's answer and ours
    overlap. Errors of the pull are raised here, in the caller's thread; when the caller
    stops early (an error of its own), the helper stops too."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
        except BaseException as error:  # handed to the caller's thread
            put(_PullFailed(error))
            return
        put(_DONE)

    # The pull thread runs in a copy of this context, so its log lines (retries, rate-limit
    # waits) carry the organisation, connection and run ids bound by the run.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(produce,), name="crmsync-pull", daemon=True)
    worker.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, _PullFailed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=30)


__all__ = ["CrmCustomer", "RunResult", "sync_connection", "sync_records"]
