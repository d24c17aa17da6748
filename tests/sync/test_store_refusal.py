"""A page the store refuses is narrowed down to the records that caused it (by bisection):
those go to the dead letter with the store's own reason, the rest of the page commits with
its cursor, and a push the first attempt made is not made again. Both CRMs, on SQLite and
PostgreSQL.

What the store refuses here it refuses through rules an operator could add to it: a check
constraint (PostgreSQL), a trigger answering "value too long" (PostgreSQL's SQLSTATE 22001,
a data error) and a trigger that aborts (SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.failures import retry_failures
from sync.store.db import transaction
from tests.conftest import Figures
from tests.sync.conftest import World

_POSTGRESQL = (
    [
        "ALTER TABLE customers ADD CONSTRAINT test_no_poison "
        "CHECK (customer_name NOT LIKE 'Poison%') NOT VALID",
        """CREATE FUNCTION test_overflow() RETURNS trigger AS $$
        BEGIN
          IF NEW.address->>'city' = 'Overflow' THEN
            RAISE EXCEPTION 'value too long for the city column' USING ERRCODE = '22001';
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        "CREATE TRIGGER test_overflow BEFORE INSERT OR UPDATE ON customers "
        "FOR EACH ROW EXECUTE FUNCTION test_overflow()",
    ],
    [
        "DROP TRIGGER IF EXISTS test_overflow ON customers",
        "DROP FUNCTION IF EXISTS test_overflow()",
        "ALTER TABLE customers DROP CONSTRAINT IF EXISTS test_no_poison",
    ],
)
_SQLITE = (
    [
        f"""CREATE TRIGGER test_no_poison_{when} BEFORE {when} ON customers
        WHEN NEW.customer_name LIKE 'Poison%'
        BEGIN SELECT RAISE(ABORT, 'poison customers are refused'); END"""
        for when in ("INSERT", "UPDATE")
    ],
    [
        "DROP TRIGGER IF EXISTS test_no_poison_INSERT",
        "DROP TRIGGER IF EXISTS test_no_poison_UPDATE",
    ],
)


@contextmanager
def store_refuses_poison(world: World) -> Iterator[bool]:
    """While inside, the store refuses customers named ``Poison...`` (and, on PostgreSQL,
    a city ``Overflow``, as a data error); yields whether the store is PostgreSQL."""
    postgresql = world.engine.dialect.name == "postgresql"
    add, drop = _POSTGRESQL if postgresql else _SQLITE
    with world.engine.begin() as connection:
        for statement in add:
            connection.execute(text(statement))
    try:
        yield postgresql
    finally:
        with world.engine.begin() as connection:
            for statement in drop:
                connection.execute(text(statement))


def test_refused_records_go_to_the_dead_letter_and_the_rest_of_the_page_commits(
    world: World, figures: Figures
) -> None:
    good = [world.harness.create({"customer_name": f"Company {i}"}) for i in range(9)]
    with store_refuses_poison(world) as postgresql:
        poison = [world.harness.create({"customer_name": f"Poison {i}"}) for i in range(2)]
        overflow = []
        if postgresql:
            overflow = [world.harness.create({"customer_name": "Big", "address.city": "Overflow"})]
        first = world.sync()
        assert first.status == "succeeded", first.error
        refused = poison + overflow
        assert first.counters["created"] == len(good)
        assert first.counters["failed"] == len(refused)
        failures = {f.crm_id: f for f in world.failures()}
        assert set(failures) == set(refused)
        for crm_id in poison:
            failure = failures[crm_id]
            assert (failure.direction, failure.error_kind) == ("pull", "store")
            assert failure.payload["fields"]["customer_name"].startswith("Poison")
            if postgresql:
                assert failure.error_code == "23514"  # check_violation
                assert 'violates check constraint "test_no_poison"' in failure.error_message
            else:
                assert "poison customers are refused" in failure.error_message
        for crm_id in overflow:
            assert failures[crm_id].error_code == "22001"
            assert "value too long" in failures[crm_id].error_message
        for crm_id in good:
            assert world.customer_by_external_id(crm_id)["customer_name"].startswith("Company")
        # the cursor moved past the page: the next run pulls nothing again
        again = world.sync()
        assert again.status == "succeeded", again.error
        assert (again.counters["pulled"], again.counters["failed"]) == (0, 0)
        assert len(world.failures()) == len(refused)
    figures.report(page=len(good) + len(refused), refused_by_bisection=len(refused))
    # once the store takes them, a retry syncs them and closes their failures
    outcome = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (outcome.retried, outcome.recovered) == (len(refused), len(refused))
    assert world.failures() == []
    assert world.count_customers() == len(good) + len(refused)


def test_a_push_made_before_the_store_refused_the_page_is_not_made_again(world: World) -> None:
    edited, poisoned = (world.harness.create({"customer_name": n}) for n in ("Alder", "Birch"))
    assert world.sync().status == "succeeded"
    customer_id = world.customer_by_external_id(edited)["id"]
    with transaction(world.engine) as session:
        patch = CustomerPatch.model_validate({"address": {"city": "Billing City"}})
        update_customer(session, world.organisation_id, customer_id, patch)
    # both records come back in one page: one with a billing change to push (and a CRM
    # change to apply), one with a name the store refuses
    world.harness.edit(edited, {"address.zipCode": "75001"})
    world.harness.edit(poisoned, {"customer_name": "Poison Birch"})
    with store_refuses_poison(world):
        result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["calls_push"] == world.harness.push_calls(updates=1, creates=0)
    assert world.harness.read(edited)["address.city"] == "Billing City"
    customer = world.customer_by_external_id(edited)
    assert customer["address"]["city"] == "Billing City"
    assert customer["address"]["zipCode"] == "75001"
    link = world.link(edited)
    assert link is not None and link.base["address.city"] == "Billing City"
    (failure,) = world.failures()
    assert (failure.crm_id, failure.error_kind) == (poisoned, "store")
    assert world.customer_by_external_id(poisoned)["customer_name"] == "Birch"
