"""Retrying the dead letter (issue 12, part 6), through the sandbox on both CRMs and both
stores: a retried failure keeps its id and counts its attempts, so an operator can follow
one failure from its first refusal to its recovery."""

from __future__ import annotations

from sync import customers
from sync.customer import CustomerPatch
from sync.failures import retry_failures
from sync.store.db import transaction
from sync.store.models import RecordFailure
from tests.sync.conftest import World

REJECT = {"salesforce": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "hubspot": "validation"}


def test_a_retried_failure_keeps_its_id_and_counts_its_attempts(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    world.harness.set_faults(record_errors={crm_id: REJECT[world.harness.key]})
    with transaction(world.engine) as s:
        patch = CustomerPatch(customer_name="Refused Name")
        customers.update_customer(s, world.organisation_id, customer["id"], patch)
    world.sync()
    (failure,) = world.failures()
    assert failure.attempts == 1

    still = retry_failures(
        world.engine, world.settings, world.organisation_id, failure_ids=[failure.id]
    )

    assert (still.retried, still.recovered, still.still_failing) == (1, 0, 1)
    (again,) = world.failures()
    assert again.id == failure.id and again.attempts == 2
    assert again.run_id == still.runs[0].run_id  # it names the retry that failed
    assert again.next_retry_at is not None

    world.harness.set_faults(record_errors={})
    done = retry_failures(
        world.engine, world.settings, world.organisation_id, failure_ids=[failure.id]
    )

    assert (done.retried, done.recovered, done.still_failing) == (1, 1, 0)
    assert world.failures() == []
    with transaction(world.engine) as s:
        closed = s.get(RecordFailure, failure.id)
        assert closed is not None and closed.status != "open" and closed.attempts == 2
    assert world.harness.read(crm_id)["customer_name"] == "Refused Name"
