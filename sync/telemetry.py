"""What the sync layer tells operators: Prometheus metrics and one log line per event.

The engine calls these at the moments that matter (a run starts and finishes, a conflict
opens, a record fails, a webhook's records reach billing); each one counts and logs, so the
two never disagree. Labels are ids and kinds only (``organisation_id``, ``connection_id``,
``crm``, and a status or outcome), never a customer or a value.

Metrics (every name starts ``crmsync_``)::

    crmsync_runs_total{organisation_id,connection_id,crm,scope,status}
    crmsync_run_duration_seconds{organisation_id,connection_id,crm,scope}     histogram
    crmsync_records_total{organisation_id,connection_id,crm,outcome}
        outcome: created, updated, pushed, conflict, failed
    crmsync_open_conflicts{organisation_id,connection_id,crm}                 gauge, store
    crmsync_open_failures{organisation_id,connection_id,crm}                  gauge, store
    crmsync_webhook_intake_seconds{organisation_id,connection_id,crm}         histogram
        from the request's arrival to its events committed in the inbox
    crmsync_webhook_to_billing_seconds{organisation_id,connection_id,crm}     histogram
        from the request's arrival to its records synced into billing
    crmsync_webhooks_refused_total{organisation_id,connection_id,crm,status}

The two gauges are read from the store when scraped (:class:`StoreCollector`), so every
scrape of ``crmsync web`` shows the deployment's truth whichever worker did the work.

Runs are observed through their records: a ``SyncRun`` row inserted is a run started, and its
status leaving ``running`` is a run finished (:func:`watch_runs`, SQLAlchemy's mapper
events), so every way a run is made (a task, a webhook, ``crmsync sync --wait``, a retry, a
resync) is counted and logged the same way. Conflicts and failures are logged as the
repository writes them, inside the run (whose ids the log lines carry).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.orm import Mapper

from sync import logs
from sync.store import ops_repository
from sync.store.db import transaction
from sync.store.models import ConnectionRow, SyncRun, utcnow

log = logging.getLogger("crmsync.sync")

LABELS = ("organisation_id", "connection_id", "crm")
#: the record outcomes counted from a run's counters: outcome -> counters summed
OUTCOMES: dict[str, tuple[str, ...]] = {
    "created": ("created",),
    "updated": ("updated",),
    "pushed": ("pushed", "crm_created"),
    "conflict": ("conflicts_opened",),
    "failed": ("failed",),
}

RUNS = Counter("crmsync_runs", "Sync runs finished, by status.", [*LABELS, "scope", "status"])
RUN_DURATION = Histogram(
    "crmsync_run_duration_seconds",
    "How long sync runs take.",
    [*LABELS, "scope"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
RECORDS = Counter("crmsync_records", "Records synced, by outcome.", [*LABELS, "outcome"])
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WEBHOOK_INTAKE = Histogram(
    "crmsync_webhook_intake_seconds",
    "From a webhook request's arrival to its events committed in the inbox.",
    list(LABELS),
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_TO_BILLING = Histogram(
    "crmsync_webhook_to_billing_seconds",
    "From a webhook request's arrival to the records it named synced into billing.",
    list(LABELS),
    buckets=_LATENCY_BUCKETS,
)
WEBHOOKS_REFUSED = Counter(
    "crmsync_webhooks_refused",
    "Webhook requests refused, by HTTP status (401 signature, 404, 400, 413).",
    ["organisation_id", "connection_id", "crm", "status"],
)


def run_started(
    *,
    organisation_id: str,
    connection_id: str,
    crm: str,
    run_id: str | None,
    scope: str,
    trigger: str,
    full: bool,
    plan: bool,
) -> None:
    """A run began: its log line (the ids stay bound to this thread's lines until it ends)."""
    logs.bind(organisation_id=organisation_id, connection_id=connection_id, run_id=run_id)
    log.info(
        "run started",
        extra={"crm": crm, "scope": scope, "trigger": trigger, "full": full, "plan": plan},
    )


def run_finished(
    *,
    organisation_id: str,
    connection_id: str,
    crm: str,
    run_id: str | None,
    scope: str,
    trigger: str,
    status: str,
    duration_seconds: float,
    counters: Mapping[str, int],
    api_calls: int,
    error: str | None,
    plan: bool = False,
) -> None:
    """A run ended: count it (not a plan: it did nothing) and log one line with its figures."""
    labels = {"organisation_id": organisation_id, "connection_id": connection_id, "crm": crm}
    if not plan:
        RUNS.labels(**labels, scope=scope, status=status).inc()
        RUN_DURATION.labels(**labels, scope=scope).observe(duration_seconds)
        for outcome, names in OUTCOMES.items():
            amount = sum(counters.get(name, 0) for name in names)
            if amount:
                RECORDS.labels(**labels, outcome=outcome).inc(amount)
    figures = {k: v for k, v in counters.items() if v}
    extra = {
        "crm": crm,
        "scope": scope,
        "trigger": trigger,
        "status": status,
        "duration_seconds": round(duration_seconds, 3),
        "api_calls": api_calls,
        "counters": figures,
        "plan": plan,
    }
    if error is None:
        log.info("run finished", extra=extra)
    else:
        log.warning("run finished", extra={**extra, "error": error})
    logs.unbind("organisation_id", "connection_id", "run_id")


def conflicts_opened(conflicts: Iterable[Mapping[str, Any]]) -> None:
    """One line per conflict opened (ids and the field; never the values)."""
    for conflict in conflicts:
        log.info(
            "conflict opened",
            extra={
                "conflict_id": conflict.get("id"),
                "kind": conflict.get("kind", "field"),
                "field": conflict.get("field"),
                "customer_id": conflict.get("customer_id"),
                "crm_id": conflict.get("crm_id"),
            },
        )


def records_failed(failures: Iterable[Mapping[str, Any]]) -> None:
    """One line per record that went to the dead letter, with the CRM's or store's reason."""
    for failure in failures:
        log.warning(
            "record failed",
            extra={
                "failure_id": failure.get("id"),
                "direction": failure.get("direction"),
                "crm_id": failure.get("crm_id"),
                "customer_id": failure.get("customer_id"),
                "error_kind": failure.get("error_kind"),
                "error_code": failure.get("error_code"),
                "error_message": failure.get("error_message"),
            },
        )


def webhook_received(
    *,
    organisation_id: str,
    connection_id: str,
    crm: str,
    seconds: float,
    events: int,
    new_events: int,
) -> None:
    """A webhook's events are in the inbox, ``seconds`` after its request arrived."""
    WEBHOOK_INTAKE.labels(organisation_id, connection_id, crm).observe(seconds)
    log.debug(
        "webhook received",
        extra={
            "organisation_id": organisation_id,
            "connection_id": connection_id,
            "crm": crm,
            "events": events,
            "new_events": new_events,
        },
    )


def webhook_refused(
    *, organisation_id: str = "", connection_id: str, crm: str, status: int, reason: str
) -> None:
    """A webhook was refused: counted by status, logged with the reason
    (``organisation_id``: empty when no connection of that id and CRM exists)."""
    WEBHOOKS_REFUSED.labels(organisation_id, connection_id, crm, str(status)).inc()
    ids = {"organisation_id": organisation_id} if organisation_id else {}
    log.warning(
        "webhook refused",
        extra={
            **ids,
            "connection_id": connection_id,
            "crm": crm,
            "status": status,
            "reason": reason,
        },
    )


def webhook_events_synced(
    *, organisation_id: str, connection_id: str, crm: str, received_at: Iterable[datetime]
) -> None:
    """The records named by events received at ``received_at`` are now in billing."""
    now = utcnow()
    histogram = WEBHOOK_TO_BILLING.labels(organisation_id, connection_id, crm)
    for moment in received_at:
        histogram.observe(max(0.0, (now - moment).total_seconds()))


class StoreCollector(Collector):
    """The open conflicts and failures of every connection, read from the store at each
    scrape (one grouped query each)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        conflicts = GaugeMetricFamily(
            "crmsync_open_conflicts", "Conflicts waiting for an operator.", labels=LABELS
        )
        failures = GaugeMetricFamily(
            "crmsync_open_failures", "Records waiting in the dead letter.", labels=LABELS
        )
        try:
            with transaction(self.engine) as session:
                rows = ops_repository.open_work_by_connection(session)
        except Exception:  # the store is away: the scrape still answers, without these
            log.warning("metrics: the store did not answer", exc_info=True)
            return
        for row in rows:
            labels = [row.organisation_id, row.connection_id, row.kind]
            conflicts.add_metric(labels, row.open_conflicts)
            failures.add_metric(labels, row.open_failures)
        yield conflicts
        yield failures

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _crm_of(connection: Connection, connection_id: str) -> str:
    kind = connection.execute(
        select(ConnectionRow.kind).where(ConnectionRow.id == connection_id)
    ).scalar()
    return str(kind or "")


def _run_inserted(_mapper: Mapper[SyncRun], connection: Connection, run: SyncRun) -> None:
    run_started(
        organisation_id=run.organisation_id,
        connection_id=run.connection_id,
        crm=_crm_of(connection, run.connection_id),
        run_id=run.id,
        scope=run.scope,
        trigger=run.trigger,
        full=bool(run.full),
        plan=bool(run.plan),
    )


def _run_updated(_mapper: Mapper[SyncRun], connection: Connection, run: SyncRun) -> None:
    from sqlalchemy import inspect

    history = inspect(run).attrs.status.history
    if not history.added or run.status == "running" or "running" not in (history.deleted or ()):
        return
    run_finished(
        organisation_id=run.organisation_id,
        connection_id=run.connection_id,
        crm=_crm_of(connection, run.connection_id),
        run_id=run.id,
        scope=run.scope,
        trigger=run.trigger,
        status=run.status,
        duration_seconds=float(run.duration_seconds or 0.0),
        counters=dict(run.counters or {}),
        api_calls=int(run.api_calls or 0),
        error=run.error,
    )


_watching = False


def watch_runs() -> None:
    """Count and log every run through its ``SyncRun`` record (idempotent)."""
    global _watching
    if _watching:
        return
    event.listen(SyncRun, "after_insert", _run_inserted)
    event.listen(SyncRun, "after_update", _run_updated)
    _watching = True


watch_runs()
