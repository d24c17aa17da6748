"""The dead letter: records that failed, and retrying them once the cause is gone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update

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


def retry_failures(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    *,
    failure_ids: Sequence[str] | None = None,
    run_id: str | None = None,
    connection_id: str | None = None,
    gate: RateGate | None = None,
) -> RetryOutcome:
    """Sync again the records of the chosen open failures (by id, by run, or all).

    Each retried failure is closed as ``retried``; if the record fails again, the new
    failure carries the attempt count on, so the dead letter holds one row per record.
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
            missing = set(failure_ids) - {f.id for f in failures}
            raise NotFound(f"no open failure(s) {sorted(missing)}")
        by_connection: dict[str, list[RecordFailure]] = {}
        for failure in failures:
            by_connection.setdefault(failure.connection_id, []).append(failure)
        attempts = {_key(f): f.attempts for f in failures}
        session.execute(
            update(RecordFailure)
            .where(RecordFailure.id.in_([f.id for f in failures]))
            .values(status="retried", updated_at=utcnow())
        )
    outcome = RetryOutcome(retried=len(failures))
    for conn_id, items in by_connection.items():
        crm_ids = [f.crm_id for f in items if f.direction == "pull" and f.crm_id]
        customer_ids = [f.customer_id for f in items if f.direction == "push" and f.customer_id]
        # a pull failure without a CRM id (an email clash) is retried from the billing side
        customer_ids += [
            f.customer_id for f in items if f.direction == "pull" and not f.crm_id and f.customer_id
        ]
        result = sync_records(
            engine,
            settings,
            conn_id,
            crm_ids=crm_ids,
            customer_ids=customer_ids,
            trigger="retry",
            gate=gate,
        )
        outcome.runs.append(result)
        with transaction(engine) as session:
            again = repo.open_failures(session, organisation_id, run_id=result.run_id)
            for failure in again:
                previous = attempts.get(_key(failure))
                if previous is not None:
                    failure.attempts = previous + 1
                    failure.next_retry_at = utcnow() + _backoff(failure.attempts)
            outcome.still_failing += sum(1 for f in again if _key(f) in attempts)
    outcome.recovered = outcome.retried - outcome.still_failing
    return outcome


def _key(failure: RecordFailure) -> tuple[str, str, str]:
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
