"""The dead letter: records that failed, and connections whose run failed as a whole
(:mod:`sync.run_failures`), and retrying them once the cause is gone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from connectors.base import RateGate
from sync.engine import RunResult, sync_connection, sync_records
from sync.errors import NotFound
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import RecordFailure, utcnow

#: runs a connection's whole sync now for ``crmsync retry`` (the caller's way: under the
#: connection's lock, with its shared rate gate), and gives its result
ConnectionRun = Callable[[str], RunResult]


@dataclass
class RetryOutcome:
    retried: int = 0
    recovered: int = 0
    still_failing: int = 0
    runs: list[RunResult] = field(default_factory=list)

    @property
    def failed_runs(self) -> list[str]:
        """Each run that did not succeed, as ``run RUN_ID: error`` (or, for a sync that could
        not run, why)."""
        return [
            f"run {r.run_id}: {r.error}" if r.run_id else str(r.error)
            for r in self.runs
            if r.status != "succeeded"
        ]


def retry_failures(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    *,
    failure_ids: Sequence[str] | None = None,
    run_id: str | None = None,
    connection_id: str | None = None,
    gate_for: Callable[[str], RateGate | None] | None = None,
    actor: str | None = None,
    run_connection: ConnectionRun | None = None,
) -> RetryOutcome:
    """Sync again the records of the chosen open failures (by id, by run, or all; of one
    connection or all), one run per connection with its rate gate (``gate_for``).

    A failure keeps its id however often it is retried, so an operator can follow it: a
    record that fails again updates its open failure in place (the run records it under
    the same key: one row per record), with ``attempts`` counted on and its next automatic
    retry backed off; a record that now syncs closes its failure (``resolved`` by the run,
    else ``retried``). A retry run that fails as a whole leaves the failures open. Each retry
    is audited when an ``actor`` asks. Raises :class:`NotFound` for an id that is not an
    open failure.

    A connection's own failure (a run that failed as a whole) is retried by a run of the
    whole connection (``run_connection``; by default :func:`sync_connection` here, with the
    connection's gate), first: when it succeeds the failure is resolved and the
    connection's failed records are retried after it; when it fails again, the failure
    stays open with one attempt more and the new error, and its records wait (the fault
    that stopped the run would stop theirs).
    """
    failures = _failures_asked(
        engine, organisation_id, failure_ids=failure_ids, run_id=run_id, connection_id=connection_id
    )
    with transaction(engine) as session:
        _audit_retry(session, organisation_id, failures, actor)
    outcome = RetryOutcome(retried=len(failures))
    for conn_id, items in _by_connection(failures).items():
        runs, still_failing = _retry_connection(
            engine, settings, organisation_id, conn_id, items, gate_for, run_connection
        )
        outcome.runs += runs
        outcome.still_failing += still_failing
    outcome.recovered = outcome.retried - outcome.still_failing
    return outcome


def _failures_asked(
    engine: Engine,
    organisation_id: str,
    *,
    failure_ids: Sequence[str] | None,
    run_id: str | None,
    connection_id: str | None,
) -> list[RecordFailure]:
    """The open failures asked for; :class:`NotFound` for an id that is not one, or a run
    the organisation does not have."""
    with transaction(engine) as session:
        failures = repo.open_failures(
            session,
            organisation_id,
            connection_id=connection_id,
            run_id=run_id,
            failure_ids=failure_ids,
        )
        if failure_ids is not None and len(failures) != len(set(failure_ids)):
            missing = sorted(set(failure_ids) - {f.id for f in failures})
            raise NotFound(f"no open failure(s) {', '.join(missing)}")
        if run_id is not None and not failures and _run_unknown(session, organisation_id, run_id):
            raise NotFound(f"no run {run_id!r} in this organisation")
        return list(failures)


def _retry_connection(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    conn_id: str,
    items: Sequence[RecordFailure],
    gate_for: Callable[[str], RateGate | None] | None,
    run_connection: ConnectionRun | None,
) -> tuple[list[RunResult], int]:
    """One connection's failures: its own first (a run of the whole connection), then its
    records' unless that run failed again. The runs, and how many failures stay open."""
    whole = [f for f in items if f.direction == repo.CONNECTION_FAILURE]
    records = [f for f in items if f.direction != repo.CONNECTION_FAILURE]
    runs: list[RunResult] = []
    still_failing = 0
    if whole:
        if run_connection is None:
            gate = gate_for(conn_id) if gate_for is not None else None
            result = sync_connection(engine, settings, conn_id, trigger="retry", gate=gate)
        else:
            result = run_connection(conn_id)
        runs.append(result)
        still_failing += _settle(engine, organisation_id, result, whole)
        if result.status != "succeeded":
            return runs, still_failing + len(records)
    if records:
        gate = gate_for(conn_id) if gate_for is not None else None
        result = _sync_again(engine, settings, conn_id, records, gate)
        runs.append(result)
        still_failing += _settle(engine, organisation_id, result, records)
    return runs, still_failing


def _run_unknown(session: Session, organisation_id: str, run_id: str) -> bool:
    """``run_id`` names no run of the organisation (a typo is not "nothing to retry")."""
    return repo.get_run(session, organisation_id, run_id) is None


def _audit_retry(
    session: Session, organisation_id: str, failures: Sequence[RecordFailure], actor: str | None
) -> None:
    """Audit each retry an operator (``actor``) asked for."""
    for failure in failures if actor else []:
        repo.add_audit(
            session,
            organisation_id,
            actor or "",
            "failure_retried",
            failure.customer_id or failure.crm_id or failure.connection_id,
            {
                "failure_id": failure.id,
                "connection_id": failure.connection_id,
                "direction": failure.direction,
                "crm_id": failure.crm_id,
                "error": f"{failure.error_kind} {failure.error_code}".strip(),
            },
        )


def _by_connection(failures: Sequence[RecordFailure]) -> dict[str, list[RecordFailure]]:
    grouped: dict[str, list[RecordFailure]] = {}
    for failure in failures:
        grouped.setdefault(failure.connection_id, []).append(failure)
    return grouped


def _sync_again(
    engine: Engine,
    settings: Settings,
    connection_id: str,
    failures: list[RecordFailure],
    gate: RateGate | None,
) -> RunResult:
    """One run over the failed records of a connection: pulls by CRM id, pushes by customer."""
    crm_ids = [f.crm_id for f in failures if f.direction == "pull" and f.crm_id]
    # a refused contact is pushed again with its customer's pending contacts
    customer_ids = [
        f.customer_id for f in failures if f.direction in ("push", "contact") and f.customer_id
    ]
    # a pull failure without a CRM id (an email clash) is retried from the billing side
    customer_ids += [
        f.customer_id for f in failures if f.direction == "pull" and not f.crm_id and f.customer_id
    ]
    return sync_records(
        engine,
        settings,
        connection_id,
        crm_ids=crm_ids,
        customer_ids=customer_ids,
        trigger="retry",
        gate=gate,
    )


def _settle(
    engine: Engine, organisation_id: str, result: RunResult, failures: list[RecordFailure]
) -> int:
    """After the retry run: a record that failed again kept its failure (same id, updated in
    place by the run, ``attempts`` counted on), now due after a longer wait; the others are
    closed as ``retried`` unless the run already resolved them, or left open when the run
    stopped. The number still failing."""
    with transaction(engine) as session:
        again = (
            {f.id: f for f in repo.open_failures(session, organisation_id, run_id=result.run_id)}
            if result.run_id is not None
            else {}  # no run was made (the connection was busy or paused)
        )
        still = 0
        for failure in failures:
            found = again.get(failure.id)
            if found is not None:
                if found.direction != repo.CONNECTION_FAILURE:
                    # a connection's failure is retried by its next scheduled run
                    found.next_retry_at = utcnow() + _backoff(found.attempts)
                still += 1
            elif result.status == "succeeded":
                session.execute(
                    update(RecordFailure)
                    .where(RecordFailure.id == failure.id, RecordFailure.status == "open")
                    .values(status="retried", updated_at=utcnow())
                )
            else:
                still += 1  # the run stopped: the failure stays open for the next retry
    return still


def _backoff(attempts: int) -> timedelta:
    """When a failure is due for its next automatic retry: 1 min, 2, 4 ... up to a day."""
    return timedelta(minutes=min(2 ** (attempts - 1), 24 * 60))


def describe_failure(failure: RecordFailure) -> dict[str, Any]:
    return {
        "id": failure.id,
        # what failed: one ``record`` (its ids below), or the ``connection``'s run as a
        # whole (no record ids: every record of the run waits for it)
        "level": "connection" if failure.direction == repo.CONNECTION_FAILURE else "record",
        "connection_id": failure.connection_id,
        "run_id": failure.run_id,
        "direction": failure.direction,
        "crm_id": failure.crm_id,
        "customer_id": failure.customer_id,
        "error_kind": failure.error_kind,
        "error_code": failure.error_code,
        "error_message": failure.error_message,
        "attempts": failure.attempts,
        "status": failure.status,
        "next_retry_at": failure.next_retry_at.isoformat() if failure.next_retry_at else None,
        "created_at": failure.created_at.isoformat() if failure.created_at else None,
        "payload": failure.payload,
    }
