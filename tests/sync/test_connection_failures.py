"""A run that fails as a whole is a failure of its connection in the dead letter (issue 9,
CRM faults): one open row per connection, with the CRM's own error, however often its runs
fail; ``retry_failures`` syncs the connection again, and a run of the whole connection that
succeeds resolves it. Through the sandbox, on both CRMs and both stores."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select, text

from connectors.base import Connector, CrmContact, Page
from connectors.errors import AuthError, ConfigError, RateLimited, RetriableError
from sandbox.server import Sandbox
from sync.crypto import new_secret_key
from sync.engine import sync_connection
from sync.errors import SecretKeyMissing, StaleRun
from sync.failures import describe_failure, retry_failures
from sync.run_failures import classify
from sync.store import sync_repository as repo
from sync.store.db import make_engine, transaction
from sync.store.models import Base, RecordFailure, SyncRun
from tests.sync.conftest import World, make_world

#: more 5xx answers in a row than any run's tries: every run fails until they are cleared
FOREVER = 10_000


@pytest.fixture
def hubspot_world(engine: Engine, sandbox: Sandbox) -> World:
    """One CRM, both stores: for what does not depend on the CRM (or is HubSpot's own)."""
    return make_world(engine, sandbox, "hubspot")


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    # two runs failing at once need two writers at once: PostgreSQL (SQLite serialises them)
    engine = make_engine(postgres_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


def _all_failures(world: World) -> list[RecordFailure]:
    with transaction(world.engine) as s:
        rows = list(
            s.scalars(
                select(RecordFailure).where(RecordFailure.connection_id == world.connection_id)
            )
        )
        s.expunge_all()
        return rows


def _failing(world: World, error: BaseException) -> Connector:
    """The harness's connector, whose contacts pull raises ``error``."""
    connector = world.harness.connector()

    def pull_contacts(cursor: str | None, *, full: bool = False) -> Iterator[Page[CrmContact]]:
        raise error

    connector.pull_contacts = pull_contacts  # type: ignore[method-assign]
    return connector


def test_failing_runs_keep_one_open_failure_that_a_retry_resolves(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    crm_ids = world.harness.seed(3)
    fault = world.harness.server_errors(FOREVER)

    with caplog.at_level(logging.INFO, logger="crmsync.sync"):
        first = world.sync()
    assert first.status == "failed"
    (failure,) = world.failures()
    shown = describe_failure(failure)
    assert shown["level"] == "connection" and failure.direction == "connection"
    assert (failure.crm_id, failure.customer_id) == (None, None)
    assert failure.error_kind == "unavailable" and failure.error_code in ("500", "503")
    assert fault.message in failure.error_message
    # the run's reason, without the class its code names ("unavailable 503: Salesforce 503 ...")
    assert first.error is not None and first.error.endswith(": " + failure.error_message)
    assert (failure.run_id, failure.attempts) == (first.run_id, 1)
    assert failure.payload == {"scope": "connection", "trigger": "operator", "full": False}
    opened = [r for r in caplog.records if r.getMessage() == "connection failure opened"]
    assert [getattr(r, "failure_id", None) for r in opened] == [failure.id]

    # the next failing runs (the schedule's, a webhook's, a retry's) update the same row
    second = world.sync(trigger="schedule")
    webhook = world.sync_records(crm_ids=crm_ids[:1])
    still = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (second.status, webhook.status) == ("failed", "failed")
    assert (still.retried, still.recovered, still.still_failing) == (1, 0, 1)
    (again,) = world.failures()
    assert again.id == failure.id and again.attempts == 4
    assert again.run_id == still.runs[0].run_id
    assert again.next_retry_at is None  # the connection's schedule retries it
    assert len(_all_failures(world)) == 1

    world.harness.server_errors(0)  # the fault is gone
    with caplog.at_level(logging.INFO, logger="crmsync.sync"):
        done = retry_failures(
            world.engine, world.settings, world.organisation_id, failure_ids=[failure.id]
        )

    assert (done.retried, done.recovered, done.still_failing) == (1, 1, 0)
    assert [r.status for r in done.runs] == ["succeeded"]
    assert world.failures() == []
    (closed,) = _all_failures(world)
    assert (closed.id, closed.status, closed.attempts) == (failure.id, "resolved", 4)
    assert {c["external_id"] for c in world.customers()} == set(crm_ids)
    assert any(r.getMessage() == "connection failure resolved" for r in caplog.records)


def test_a_later_run_of_the_connection_resolves_it_and_a_new_fault_opens_another(
    world: World,
) -> None:
    crm_ids = world.harness.seed(2)
    world.harness.server_errors(FOREVER)
    assert world.sync().status == "failed"
    (failure,) = world.failures()
    world.harness.server_errors(0)

    # a run of some records proves nothing about the rest of the connection
    assert world.sync_records(crm_ids=crm_ids[:1]).status == "succeeded"
    assert [f.id for f in world.failures()] == [failure.id]

    assert world.sync(trigger="schedule").status == "succeeded"
    assert world.failures() == []

    world.harness.server_errors(FOREVER)
    assert world.sync().status == "failed"
    (new,) = world.failures()
    assert new.id != failure.id and new.attempts == 1


def test_a_retry_of_records_waits_while_the_connection_fails(world: World) -> None:
    """A connection's failure is retried first; its failed records only once it succeeds."""
    crm_ids = world.harness.seed(2)
    world.harness.server_errors(FOREVER)
    assert world.sync().status == "failed"
    # a record of the connection failed earlier (as the dead letter keeps it)
    with transaction(world.engine) as s:
        repo.record_failures(
            s,
            [
                {
                    "organisation_id": world.organisation_id,
                    "connection_id": world.connection_id,
                    "run_id": None,
                    "direction": "pull",
                    "crm_id": crm_ids[0],
                    "customer_id": None,
                    "payload": {},
                    "error_kind": "validation",
                    "error_code": "",
                    "error_message": "refused",
                }
            ],
        )
    calls = world.harness.api_calls()

    waiting = retry_failures(world.engine, world.settings, world.organisation_id)

    assert (waiting.retried, waiting.recovered, waiting.still_failing) == (2, 0, 2)
    assert len(waiting.runs) == 1, "the records were not tried behind a failing connection"
    assert len(world.failures()) == 2
    assert world.harness.api_calls() > calls

    world.harness.server_errors(0)
    done = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (done.retried, done.recovered, done.still_failing) == (2, 2, 0)
    assert world.failures() == []


def test_paused_interrupted_and_planned_runs_open_no_failure(world: World) -> None:
    world.harness.seed(2)
    world.harness.server_errors(FOREVER)
    planned = world.sync(plan=True)
    assert planned.status == "failed" and planned.run_id is None
    assert world.failures() == []
    world.harness.server_errors(0)

    stale = world.sync(connector=_failing(world, StaleRun("another worker holds the lock")))
    assert stale.status == "interrupted"
    with pytest.raises(KeyboardInterrupt):
        world.sync(connector=_failing(world, KeyboardInterrupt()))
    world.harness.spend_allowance(after=0)
    paused = world.sync()
    world.harness.restore_allowance()

    assert paused.status == "paused"
    assert world.failures() == []


def test_an_error_of_ours_is_a_failure_of_kind_internal(hubspot_world: World) -> None:
    world = hubspot_world
    world.harness.seed(1)
    result = world.sync(connector=_failing(world, KeyError("a key the CRM left out")))
    assert result.status == "failed"
    (failure,) = world.failures()
    assert (failure.error_kind, failure.error_code) == ("internal", "KeyError")
    assert failure.error_message == "'a key the CRM left out'"  # shown as KeyError: ...


def test_an_expired_hubspot_token_is_an_auth_failure_with_the_crm_words(
    hubspot_world: World,
) -> None:
    """(A Salesforce session is renewed by logging in again: tests/reliability refuses that.)"""
    world = hubspot_world
    world.harness.seed(1)
    fault = world.harness.expire_tokens()
    assert world.sync().status == "failed"
    (failure,) = world.failures()
    assert (failure.error_kind, failure.error_code) == ("auth", "401")
    assert fault.message in failure.error_message


def test_two_runs_failing_at_once_share_one_open_failure(
    pg_engine: Engine, sandbox: Sandbox
) -> None:
    """The connection's row is locked while its failure is found or opened (PostgreSQL;
    SQLite writes one transaction at a time)."""
    world = make_world(pg_engine, sandbox, "hubspot")
    world.harness.server_errors(FOREVER)
    run_ids = [world.sync().run_id for _ in range(2)]
    world.harness.server_errors(0)
    with transaction(world.engine) as s:
        s.execute(
            RecordFailure.__table__.delete().where(
                RecordFailure.connection_id == world.connection_id
            )
        )
    entered = threading.Event()
    errors: list[BaseException] = []

    def record(run_id: str | None) -> None:
        try:
            with transaction(world.engine) as s:
                entered.set()
                repo.record_connection_failure(
                    s,
                    organisation_id=world.organisation_id,
                    connection_id=world.connection_id,
                    run_id=str(run_id),
                    error_kind="unavailable",
                    error_code="503",
                    error_message="down",
                    payload={},
                )
        except BaseException as error:  # handed to the test's thread
            errors.append(error)

    with transaction(world.engine) as s:
        repo.record_connection_failure(
            s,
            organisation_id=world.organisation_id,
            connection_id=world.connection_id,
            run_id=str(run_ids[0]),
            error_kind="unavailable",
            error_code="503",
            error_message="down",
            payload={},
        )
        other = threading.Thread(target=record, args=(run_ids[1],))
        other.start()
        entered.wait(5)
        other.join(0.3)  # it waits for this transaction's lock on the connection
        assert other.is_alive()
    other.join(10)
    assert errors == []
    (failure,) = world.failures()
    assert failure.attempts == 2 and failure.run_id == run_ids[1]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AuthError("HubSpot 401 EXPIRED_AUTHENTICATION: expired"), ("auth", "401")),
        (ConfigError("unknown field Billing_Email__c"), ("config", "ConfigError")),
        (RetriableError("Salesforce 503 down", status=503), ("unavailable", "503")),
        (
            RetriableError("HubSpot unreachable: ReadTimeoutError"),
            ("unavailable", "RetriableError"),
        ),
        (RateLimited("HubSpot 429", wait_seconds=1, policy="SECONDLY"), ("rate_limit", "SECONDLY")),
        (StaleRun("lost"), ("sync", "StaleRun")),
        (ValueError("x"), ("internal", "ValueError")),
    ],
)
def test_a_run_failure_is_classified_from_the_error_tree(
    error: BaseException, expected: tuple[str, str]
) -> None:
    assert classify(error) == expected


def test_a_run_that_cannot_start_is_a_failed_run_and_the_connections_failure(
    hubspot_world: World,
) -> None:
    """Credentials that the current secret key cannot decrypt: the connector cannot be
    made, so no call is made; the run is recorded failed, the failure opened, the error
    raised to the caller as before. With the right key back, a retry recovers it."""
    world = hubspot_world
    world.harness.seed(1)
    rotated = world.settings.model_copy(update={"secret_key": SecretStr(new_secret_key())})

    with pytest.raises(SecretKeyMissing):
        sync_connection(world.engine, rotated, world.connection_id, trigger="schedule")
    with pytest.raises(SecretKeyMissing):
        sync_connection(world.engine, rotated, world.connection_id, trigger="schedule")

    (failure,) = world.failures()
    assert (failure.error_kind, failure.error_code, failure.attempts) == (
        "sync",
        "SecretKeyMissing",
        2,
    )
    assert "cannot be decrypted" in failure.error_message
    with transaction(world.engine) as s:
        run = s.get(SyncRun, failure.run_id)
        assert run is not None and run.status == "failed" and run.finished_at is not None
        assert run.error is not None and run.error.endswith(failure.error_message)
        assert run.trigger == "schedule"

    done = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (done.retried, done.recovered) == (1, 1)
    assert world.failures() == []
