"""The sync engine through the sandbox, for both CRMs, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from sandbox.server import Sandbox
from sync import customers
from sync.customer import CustomerIn, CustomerPatch
from sync.store.db import transaction
from tests.sync.conftest import World, make_world

ADDRESS = {
    "line1": "1 Main Street",
    "line2": "Suite 100",
    "city": "Springfield",
    "state": "Illinois",
    "zipCode": "62701",
    "country": "United States",
    "country_code": "US",
}
REJECT = {"salesforce": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "hubspot": "validation"}
CRM_ADDRESS = {f"address.{k}": v for k, v in ADDRESS.items()}


def _billing_edit(world: World, customer_id: str, **changes: object) -> None:
    with transaction(world.engine) as s:
        customers.update_customer(
            s, world.organisation_id, customer_id, CustomerPatch.model_validate(changes)
        )


def _billing_create(world: World, **data: object) -> str:
    with transaction(world.engine) as s:
        return str(
            customers.create_customer(s, world.organisation_id, CustomerIn.model_validate(data)).id
        )


def test_first_sync_into_an_empty_store_creates_and_links_everything(world: World) -> None:
    crm_ids = world.harness.seed(25)
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["created"] == 25
    assert world.count_customers() == 25
    for crm_id in crm_ids:
        customer = world.customer_by_external_id(crm_id)
        crm = world.harness.read(crm_id)
        assert customer["customer_name"] == crm["customer_name"]
        assert customer["address"]["city"] == crm["address.city"]
        link = world.link(crm_id)
        assert link is not None and link.state == "active"
        assert link.base["customer_name"] == crm["customer_name"]
    assert result.counters["contacts"] >= 50  # two or three contacts per record


def test_a_second_sync_right_after_changes_nothing(world: World) -> None:
    world.harness.seed(10)
    world.sync()
    before = world.customers()
    calls = world.harness.api_calls()
    again = world.sync()
    assert again.status == "succeeded"
    assert world.customers() == before
    done = {k: v for k, v in again.counters.items() if v and not k.startswith("calls_")}
    assert done == {}
    # the incremental checks only: one query per object on Salesforce (queryAll sees
    # deletes too); on HubSpot a search and an archived-list per object
    assert world.harness.api_calls() - calls == (2 if world.harness.key == "salesforce" else 4)


def test_first_sync_against_existing_customers_applies_the_match_rule(world: World) -> None:
    same = world.harness.create({"customer_name": "Acme Corporation", **CRM_ADDRESS})
    renamed = world.harness.create({"customer_name": "ACME Corp", **CRM_ADDRESS})
    moved = world.harness.create(
        {"customer_name": "Globex", **CRM_ADDRESS, "address.line2": "Ste 100"}
    )
    _billing_create(world, customer_name="Acme Corporation", external_id=same, address=ADDRESS)
    _billing_create(world, customer_name="Acme Corporation", external_id=renamed, address=ADDRESS)
    _billing_create(world, customer_name="Globex", external_id=moved, address=ADDRESS)

    result = world.sync()

    assert result.status == "succeeded", result.error
    assert result.counters["linked"] == 3 and result.counters["created"] == 0
    conflicts = {(c.crm_id, c.field): c for c in world.conflicts()}
    assert set(conflicts) == {(renamed, "customer_name"), (moved, "address.line2")}
    name = conflicts[(renamed, "customer_name")]
    assert (name.billing_value, name.crm_value) == ("Acme Corporation", "ACME Corp")
    # neither side was overwritten
    assert world.customer_by_external_id(renamed)["customer_name"] == "Acme Corporation"
    assert world.harness.read(renamed)["customer_name"] == "ACME Corp"
    assert world.customer_by_external_id(moved)["address"]["line2"] == "Suite 100"
    assert world.harness.read(moved)["address.line2"] == "Ste 100"


def test_normalized_mode_links_records_that_differ_only_in_case_and_spacing(
    engine: Engine, sandbox: Sandbox
) -> None:
    world = make_world(engine, sandbox, "salesforce", match_mode="normalized")
    crm_id = world.harness.create({"customer_name": "ACME  corp", **CRM_ADDRESS})
    _billing_create(world, customer_name="Acme Corp", external_id=crm_id, address=ADDRESS)
    result = world.sync()
    assert result.counters["linked"] == 1
    assert world.conflicts() == []


def test_one_sided_edits_flow_to_the_other_side(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)

    world.harness.edit(crm_id, {"address.city": "Zürich"})
    _billing_edit(world, customer["id"], phone_number="+41 44 668 1800")
    result = world.sync()

    assert result.status == "succeeded", result.error
    assert world.customer_by_external_id(crm_id)["address"]["city"] == "Zürich"
    assert world.harness.read(crm_id)["phone_number"] == "+41 44 668 1800"
    assert result.counters["updated"] == 1 and result.counters["pushed"] == 1


def test_both_sided_edits_agree_or_conflict_field_by_field(world: World) -> None:
    same, different = world.harness.seed(2)
    world.sync()
    a = world.customer_by_external_id(same)
    b = world.customer_by_external_id(different)

    world.harness.edit(same, {"customer_name": "Same New Name"})
    _billing_edit(world, a["id"], customer_name="Same New Name")
    world.harness.edit(different, {"customer_name": "CRM Name", "address.city": "Lyon"})
    _billing_edit(world, b["id"], customer_name="Billing Name")
    result = world.sync()

    assert result.status == "succeeded", result.error
    conflicts = world.conflicts()
    assert [(c.crm_id, c.field, c.billing_value, c.crm_value) for c in conflicts] == [
        (different, "customer_name", "Billing Name", "CRM Name")
    ]
    # the conflicted field is written on neither side; the other fields still sync
    assert world.customer_by_external_id(different)["customer_name"] == "Billing Name"
    assert world.harness.read(different)["customer_name"] == "CRM Name"
    assert world.customer_by_external_id(different)["address"]["city"] == "Lyon"
    # a later sync leaves the conflicted field alone too
    world.sync()
    assert world.harness.read(different)["customer_name"] == "CRM Name"
    assert len(world.conflicts()) == 1


def test_pushed_values_coming_back_are_not_treated_as_crm_changes(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    _billing_edit(world, customer["id"], customer_name="Pushed Name")
    first = world.sync()
    assert first.counters["pushed"] == 1
    echo = world.sync()
    assert echo.counters["updated"] == 0 and echo.counters["pushed"] == 0
    assert echo.counters["conflicts_opened"] == 0
    assert world.customer_by_external_id(crm_id)["customer_name"] == "Pushed Name"


def test_billing_only_customers_are_created_in_the_crm_once(world: World) -> None:
    customer_id = _billing_create(
        world, customer_name="Billing Only GmbH", address={**ADDRESS, "city": "Köln"}
    )
    result = world.sync()
    assert result.counters["crm_created"] == 1
    customer = next(c for c in world.customers() if c["id"] == customer_id)
    crm_id = customer["external_id"]
    assert crm_id and world.harness.read(crm_id)["customer_name"] == "Billing Only GmbH"
    again = world.sync()
    assert again.counters["crm_created"] == 0 and world.count_customers() == 1


def test_delete_keeps_the_customer_and_restore_reactivates_the_link(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    world.harness.delete(crm_id)
    result = world.sync()
    assert result.counters["deleted"] == 1
    link = world.link(crm_id)
    assert link is not None and link.state == "remote_deleted"
    assert world.count_customers() == 1
    world.harness.restore(crm_id)
    result = world.sync()
    assert result.counters["restored"] == 1
    link = world.link(crm_id)
    assert link is not None and link.state == "active"


def test_merge_of_two_linked_records_is_a_conflict_never_a_billing_merge(world: World) -> None:
    winner, loser = world.harness.seed(2)
    world.sync()
    survivor = world.harness.merge(winner, loser)
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert world.count_customers() == 2
    merge_conflicts = [c for c in world.conflicts() if c.kind == "merge"]
    assert len(merge_conflicts) == 1
    assert merge_conflicts[0].crm_id == survivor


def test_merge_into_an_unlinked_record_repoints_the_link(world: World) -> None:
    linked = world.harness.seed(1)[0]
    world.sync()
    unlinked = world.harness.create({"customer_name": "Survivor Inc", **CRM_ADDRESS})
    survivor = world.harness.merge(unlinked, linked)
    result = world.sync()
    assert result.status == "succeeded", result.error
    customer = world.customer_by_external_id(linked)
    links = [
        lk for lk in world.links() if lk.customer_id == customer["id"] and lk.state == "active"
    ]
    assert [lk.crm_id for lk in links] == [survivor]


def test_partial_push_failures_go_to_the_dead_letter_and_the_rest_is_pushed(world: World) -> None:
    good, bad = world.harness.seed(2)
    world.sync()
    for crm_id in (good, bad):
        _billing_edit(
            world, world.customer_by_external_id(crm_id)["id"], customer_name=f"New {crm_id}"
        )
    world.harness.set_faults(record_errors={bad: REJECT[world.harness.key]})
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert world.harness.read(good)["customer_name"] == f"New {good}"
    failures = world.failures()
    assert [(f.direction, f.crm_id) for f in failures] == [("push", bad)]
    assert failures[0].error_message  # the CRM's own message

    world.harness.set_faults(record_errors={})
    from sync.failures import retry_failures

    outcome = retry_failures(world.engine, world.settings, world.organisation_id)
    assert outcome.recovered == 1
    assert world.harness.read(bad)["customer_name"] == f"New {bad}"
    assert world.failures() == []


def test_plan_mode_writes_nothing_and_lists_what_it_would_do(world: World) -> None:
    existing = world.harness.seed(3)
    world.sync()
    renamed = world.harness.create({"customer_name": "Plan Co", **CRM_ADDRESS})
    world.harness.edit(existing[0], {"address.city": "Oslo"})
    _billing_edit(
        world, world.customer_by_external_id(existing[1])["id"], customer_name="Billing Rename"
    )
    _billing_create(world, customer_name="Planned Billing Only")
    before_customers = world.customers()
    before_crm = {i: world.harness.read(i) for i in existing}

    result = world.sync(plan=True)

    assert result.plan is not None and result.run_id is None
    plan = result.plan
    assert [c["crm_id"] for c in plan.billing_creates] == [renamed]
    assert {(u["crm_id"], u["field"], u["to"]) for u in plan.billing_updates} == {
        (existing[0], "address.city", "Oslo")
    }
    assert {(u["crm_id"], u["field"], u["to"]) for u in plan.crm_updates} == {
        (existing[1], "customer_name", "Billing Rename")
    }
    assert [c["customer_name"] for c in plan.crm_creates] == ["Planned Billing Only"]
    assert world.customers() == before_customers
    assert {i: world.harness.read(i) for i in existing} == before_crm


def test_unlinked_records_are_reported_not_created_under_the_ignore_policy(
    engine: Engine, sandbox: Sandbox
) -> None:
    world = make_world(engine, sandbox, "hubspot", create_policy="ignore", push_creates=False)
    world.harness.seed(4)
    result = world.sync()
    assert result.counters["ignored"] == 4
    assert world.count_customers() == 0


def test_invalid_crm_values_fail_that_record_only(world: World) -> None:
    good = world.harness.create({"customer_name": "Fine Ltd", **CRM_ADDRESS})
    # Salesforce requires a name but takes any country code; HubSpot takes a nameless company
    broken, rule = (
        ({"customer_name": "Bad Country Ltd", "address.country_code": "ZZ"}, "country_code")
        if world.harness.key == "salesforce"
        else ({"customer_name": None, "address.city": "Nowhere"}, "customer_name")
    )
    bad = world.harness.create({**CRM_ADDRESS, **broken})
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert (result.counters["created"], result.counters["failed"]) == (1, 1)
    assert world.customer_by_external_id(good)["customer_name"] == "Fine Ltd"
    (failure,) = world.failures()
    assert failure.crm_id == bad and rule in failure.error_message


def test_one_way_fields_follow_their_source(engine: Engine, sandbox: Sandbox) -> None:
    world = make_world(
        engine,
        sandbox,
        "salesforce",
        directions={"phone_number": "crm_to_billing", "address.city": "billing_to_crm"},
    )
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    world.harness.edit(crm_id, {"address.city": "CRM City"})
    _billing_edit(world, customer["id"], phone_number="+1 555 010 0000")
    world.sync()
    assert world.harness.read(crm_id)["address.city"] == customer["address"]["city"]
    assert world.customer_by_external_id(crm_id)["phone_number"] == customer["phone_number"]


def test_edits_to_different_fields_of_one_record_both_survive(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    world.harness.edit(crm_id, {"address.city": "Trondheim"})
    _billing_edit(world, customer["id"], customer_name="Billing Side Name")
    result = world.sync()
    assert result.counters["conflicts_opened"] == 0
    assert world.customer_by_external_id(crm_id)["customer_name"] == "Billing Side Name"
    assert world.customer_by_external_id(crm_id)["address"]["city"] == "Trondheim"
    crm = world.harness.read(crm_id)
    assert (crm["customer_name"], crm["address.city"]) == ("Billing Side Name", "Trondheim")


def test_a_record_refused_again_keeps_one_dead_letter_row(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    world.harness.set_faults(record_errors={crm_id: REJECT[world.harness.key]})
    _billing_edit(world, customer["id"], customer_name="Refused Name")
    world.sync()
    world.harness.edit(crm_id, {"address.city": "Bodø"})  # the record is pulled and pushed again
    world.sync()
    (failure,) = world.failures()
    assert (failure.direction, failure.customer_id, failure.attempts) == ("push", customer["id"], 2)


def test_crm_contacts_become_the_customers_secondary_contacts(world: World) -> None:
    crm_id = world.harness.seed(1)[0]
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    with transaction(world.engine) as s:
        contacts = customers.contacts_of(s, world.organisation_id, customer["id"])
        links = customers.links_of(s, world.organisation_id, customer["id"])
    assert 2 <= len(contacts) <= 3  # the seed gives each record two or three contacts
    assert all(c["crm_id"] and c["name"] and c["communications"] == ["billing"] for c in contacts)
    assert links == [{"connection": world.harness.key, "crm_id": crm_id, "state": "active"}]


def test_a_crm_email_another_customer_has_is_held_as_a_conflict(world: World) -> None:
    first, second = world.harness.seed(2)
    world.harness.edit(first, {"email": "billing@first.example"})
    world.sync()
    # a CRM user copies the first account's e-mail onto the second, and moves it
    world.harness.edit(second, {"email": "billing@first.example", "address.city": "Tromsø"})
    result = world.sync()
    assert result.status == "succeeded", result.error
    (conflict,) = world.conflicts()
    assert (conflict.crm_id, conflict.field, conflict.crm_value) == (
        second,
        "email",
        "billing@first.example",
    )
    customer = world.customer_by_external_id(second)
    assert customer["address"]["city"] == "Tromsø"  # the rest of the record synced
    assert customer["email"] != "billing@first.example"
    assert world.failures() == []


def test_a_billing_edit_racing_the_first_pull_reaches_the_crm(world: World) -> None:
    """A billing edit whose transaction read the customer before the pull linked it and
    committed after (its clock says it is older than the link) still reaches the CRM."""
    from datetime import timedelta

    from sqlalchemy import update

    from sync.store.models import CustomerRow

    crm_ids = world.harness.seed(3)
    name = world.harness.read(crm_ids[0])["customer_name"]
    customer_id = _billing_create(world, customer_name=name, external_id=crm_ids[0])
    edited = False

    def edit_after_the_pull(step: str, counters: dict[str, int]) -> None:
        nonlocal edited
        if step != "pull" or edited:
            return
        edited = True
        _billing_edit(world, customer_id, customer_name="Renamed In Billing")
        link = world.link(crm_ids[0])
        assert link is not None
        with transaction(world.engine) as s:
            s.execute(
                update(CustomerRow)
                .where(CustomerRow.id == customer_id)
                .values(updated_at=link.updated_at - timedelta(seconds=1))
            )

    result = world.sync(progress=edit_after_the_pull)
    assert result.status == "succeeded", result.error
    assert edited
    assert world.harness.read(crm_ids[0])["customer_name"] == "Renamed In Billing"
