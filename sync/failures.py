"""The dead letter: records that failed, and retrying them once the cause is gone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from connectors.base import RateGate
from sync.engine import RunResult, sync_records
from sync.errors import NotFound
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import RecordFailure, utcnow


@dataclass
class RetryOutcome:
    retried: int = 0
    recovered: int = 0
    still_failing: int = 0
    runs: list[RunResult] = field(default_factory=list)

    @property
    def failed_runs(self) -> list[str]:
        """Each run that did not succeed, as ``RUN_ID: error``."""
        return [f"{r.run_id}: {r.error}" for r in self.runs if r.status != "succeeded"]


#: a failure's record: (connection, direction, CRM id or customer id)
_Key = tuple[str, str, str]


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
) -> RetryOutcome:
    """Sync again the records of the chosen open failures (by id, by run, or all; of one
    connection or all), one run per connection with its rate gate (``gate_for``).

    Each retried failure is closed as ``retried`` (and audited, when an ``actor`` asks); if
    the record fails again, the new failure carries the attempt count on, so the dead letter
    holds one row per record. Raises :class:`NotFound` for an id that is not an open failure.
    """
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
        _close_for_retry(session, organisation_id, failures, actor)
        attempts = {_key(f): f.attempts for f in failures}
    outcome = RetryOutcome(retried=len(failures))
    for conn_id, items in _by_connection(failures).items():
        gate = gate_for(conn_id) if gate_for is not None else None
        result = _sync_again(engine, settings, conn_id, items, gate)
        outcome.runs.append(result)
        outcome.still_failing += _carry_attempts(engine, organisation_id, result, attempts)
    outcome.recovered = outcome.retried - outcome.still_failing
    return outcome


def _close_for_retry(
    session: Session, organisation_id: str, failures: Sequence[RecordFailure], actor: str | None
) -> None:
    """Mark the failures ``retried``, each audited when an operator (``actor``) asked."""
    session.execute(
        update(RecordFailure)
        .where(RecordFailure.id.in_([f.id for f in failures]))
        .values(status="retried", updated_at=utcnow())
    )
    for failure in failures if actor else []:
        repo.add_audit(
            session,
            organisation_id,
            actor or "",
            "failure_retried",
            failure.customer_id or failure.crm_id or failure.id,
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


def _carry_attempts(
    engine: Engine, organisation_id: str, result: RunResult, attempts: dict[_Key, int]
) -> int:
    """The retried records that failed again in ``result``'s run: each new failure counts
    one attempt more than the one retried, and is due again after a longer wait."""
    with transaction(engine) as session:
        again = [
            f
            for f in repo.open_failures(session, organisation_id, run_id=result.run_id)
            if _key(f) in attempts
        ]
        for failure in again:
            failure.attempts = attempts[_key(failure)] + 1
            failure.next_retry_at = utcnow() + _backoff(failure.attempts)
    return len(again)


def _key(failure: RecordFailure) -> _Key:
    return (failure.connection_id, failure.direction, failure.crm_id or failure.customer_id or "")


def _backoff(attempts: int) -> timedelta:
    """When a failure is due for its next automatic retry: 1 min, 2, 4 ... up to a day."""
    return timedelta(minutes=min(2 ** (attempts - 1), 24 * 60))


def describe_failure(failure: RecordFailure) -> dict[str, Any]:
    return {
        "id": failure.id,
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
