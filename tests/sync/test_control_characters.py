"""The ``no_control_characters`` rule on every path: the customer model and its contacts,
the CSV import, and a sync whose CRM page holds such a value (both CRMs, SQLite and
PostgreSQL): the record goes to the dead letter naming the rule, the rest of the page syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sync import csv_import
from sync.customer import (
    NO_CONTROL_CHARACTERS,
    Contact,
    CustomerIn,
    contact_problem,
    crm_fields_problem,
    validate_fields,
)
from tests.sync.conftest import World

#: characters the rule refuses: NUL, C0 and C1 controls, DEL (a lone surrogate too, but
#: pydantic refuses that one first, as ``string_unicode``)
REFUSED = ["\x00", "\x01", "\t", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]


def rule_errors(model: type[Any], data: dict[str, Any]) -> dict[str, str]:
    """{dotted field: message} of the errors of ``data`` under the rule."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {
        ".".join(str(p) for p in e["loc"]): e["msg"]
        for e in caught.value.errors()
        if e["type"] == NO_CONTROL_CHARACTERS
    }


@pytest.mark.parametrize("char", REFUSED)
@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"customer_name": "Ac{}me"}, "customer_name"),
        ({"external_id": "A-{}1"}, "external_id"),
        ({"email": "a{}b@example.com"}, "email"),
        ({"phone_number": "+1 415{}555 0100"}, "phone_number"),
        ({"address": {"line1": "1 Main{}Street"}}, "address.line1"),
        ({"address": {"city": "Paris{}"}}, "address.city"),
        ({"ship_to_address": {"zipCode": "{}75001"}}, "ship_to_address.zipCode"),
        ({"custom_data": {"tier": "gold{}"}}, "custom_data"),
        ({"custom_data": {"ti{}er": "gold"}}, "custom_data"),
        ({"custom_data": {"users": [{"name": "Ann{}"}]}}, "custom_data"),
        (
            {"tax_info": [{"jurisdiction": "EU", "tax_type": "VAT", "value": "DE{}1"}]},
            "tax_info.0.value",
        ),
        ({"contacts": [{"name": "Ann{}Lee"}]}, "contacts.0.name"),
    ],
)
def test_the_model_refuses_control_characters_naming_field_and_rule(
    data: dict[str, Any], field: str, char: str
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{}", char)
        if isinstance(value, dict):
            return {fill(k): fill(v) for k, v in value.items()}
        return [fill(v) for v in value]

    errors = rule_errors(CustomerIn, {"customer_name": "Acme", **fill(data)})
    assert list(errors) == [field]
    assert f"U+{ord(char):04X}" in errors[field]
    assert NO_CONTROL_CHARACTERS in errors[field]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_newlines_only_in_the_address_lines(newline: str) -> None:
    lines = {f"line{i}": f"Floor 2{newline}Building {i}" for i in (1, 2, 3)}
    customer = CustomerIn.model_validate(
        {"customer_name": "Acme", "address": lines, "ship_to_address": lines}
    )
    assert customer.address is not None and customer.address.line1 == lines["line1"]
    for data in (
        {"customer_name": f"Acme{newline}Corp"},
        {"address": {"city": f"Paris{newline}Nord"}},
        {"address": {"state": f"Ile{newline}de France"}},
        {"custom_data": {"note": f"a{newline}b"}},
    ):
        assert rule_errors(CustomerIn, {"customer_name": "Acme", **data}), data
    with pytest.raises(ValidationError):
        Contact.model_validate({"name": f"Ann{newline}Lee"})


def test_flat_fields_and_crm_values_follow_the_same_rule() -> None:
    with pytest.raises(ValidationError, match=NO_CONTROL_CHARACTERS):
        validate_fields({"customer_name": "Ac\x00me"})
    with pytest.raises(ValidationError, match=NO_CONTROL_CHARACTERS):
        validate_fields({"customer_name": "Acme", "custom_data.tier": "a\x00"})
    assert validate_fields({"customer_name": "Acme", "address.line1": "1 Main\r\nFloor 2"})
    assert crm_fields_problem({"customer_name": "Acme", "address.line1": "a\nb"}) is None
    problem = crm_fields_problem({"customer_name": "Ac\x00me", "address.city": "Paris\x01"})
    assert problem is not None
    assert "customer_name:" in problem and "address.city:" in problem
    assert NO_CONTROL_CHARACTERS in problem
    assert "U+D800" in (crm_fields_problem({"customer_name": "a\ud800"}) or "")
    with pytest.raises(ValidationError, match="customer_name"):
        CustomerIn.model_validate({"customer_name": "a\ud800"})
    assert (
        crm_fields_problem({"custom_data.n": 2**70})
        == "custom_data.n: must be a number of at most 64 bits"
    )
    assert contact_problem("Ann Lee", "ann@example.com") is None
    assert "name:" in (contact_problem("Ann\x00", None) or "")
    assert "at most 255" in (contact_problem("A" * 256, None) or "")


def test_the_csv_import_reports_the_row() -> None:
    parsed = csv_import.parse(
        "customer_name,address.city,address.line1\n"
        "Good,Paris,\n"
        "Bad\x00Name,Paris,\n"
        'Lines,Rome,"1 Via Roma\r\nScala B"\n'
        "Tab,Ro\tme,\n"
    )
    assert [r.customer.customer_name for r in parsed.rows] == ["Good", "Lines"]
    errors = {e.line: e.errors for e in parsed.invalid}
    assert list(errors) == [3, 6]
    assert errors[3][0].startswith("customer_name: must not contain control characters")
    assert NO_CONTROL_CHARACTERS in errors[3][0] and "U+0000" in errors[3][0]
    assert errors[6][0].startswith("address.city:") and "U+0009" in errors[6][0]


def test_the_contacts_csv_import_reports_the_row() -> None:
    rows, invalid = csv_import.parse_contacts(
        "customer_external_id,name,email\n"
        "C-1,Ann Lee,ann@example.com\n"
        "C-1,Bo\x00Chen,bo@example.com\n"
        "C-1,Cy\x1bMoss,cy@example.com\n"
    )
    assert [r.name for r in rows] == ["Ann Lee"]
    errors = {e.line: e.errors for e in invalid}
    assert list(errors) == [3, 4]
    assert errors[3][0].startswith("name:") and NO_CONTROL_CHARACTERS in errors[3][0]
    assert "U+0000" in errors[3][0] and "U+001B" in errors[4][0]


def test_a_csv_whose_header_holds_nuls_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes("customer_name\nAcme\n".encode("utf-16-le"))
    with pytest.raises(csv_import.CsvFileError, match="NUL"):
        csv_import.read_text(path)
    path.write_bytes(b"customer_name\nAc\x00me\n")
    (row,) = csv_import.parse(csv_import.read_text(path)).invalid
    assert row.line == 2 and NO_CONTROL_CHARACTERS in row.errors[0]


def _add_contact(world: World, crm_id: str, first: str, email: str) -> str:
    """A contact of the record, as a CRM user adds one; its id."""
    if world.harness.key == "salesforce":
        return str(
            world.harness.sf.create(
                "Contact",
                {"AccountId": crm_id, "FirstName": first, "LastName": "X", "Email": email},
            )
        )
    hs = world.harness.hs
    contact = hs.create("contacts", {"firstname": first, "lastname": "X", "email": email})
    hs.associate(contact, crm_id)
    return str(contact)


def test_a_crm_record_with_a_control_character_goes_to_the_dead_letter(world: World) -> None:
    good = world.harness.create({"customer_name": "Good Co", "address.city": "Paris"})
    bad = world.harness.create({"customer_name": "Bad\x00Co", "address.city": "Paris"})
    lines = world.harness.create(
        {"customer_name": "Lines Co", "address.line1": "1 Main St", "address.line2": "Floor 2"}
    )
    later = world.harness.create({"customer_name": "Later Co", "address.city": "Rome"})
    _add_contact(world, good, "Ann", "ann@example.com")
    refused = {
        _add_contact(world, good, "B\x00b", "bob@example.com"),
        _add_contact(world, good, "C\x01d", "cd@example.com"),
    }

    first = world.sync()
    assert first.status == "succeeded", first.error
    assert first.counters["created"] == 3
    assert first.counters["failed"] == 2
    failures = {(f.crm_id, f.error_code): f for f in world.failures()}
    record = failures[(bad, NO_CONTROL_CHARACTERS)]
    assert record.direction == "pull" and record.error_kind == "validation"
    assert record.error_message.startswith("customer_name: must not contain control characters")
    assert "U+0000" in record.error_message
    # what the CRM sent is kept as far as the store can hold it
    assert record.payload["fields"]["customer_name"] == "Bad\ufffdCo"
    contact = failures[(None, NO_CONTROL_CHARACTERS)]
    assert contact.customer_id == world.customer_by_external_id(good)["id"]
    assert "contact" in contact.error_message and "name:" in contact.error_message
    # one dead-letter row per customer holds all its refused contacts
    assert {c["contact_id"] for c in contact.payload["contacts"]} == refused
    assert world.customer_by_external_id(lines)["address"]["line1"] == "1 Main St"

    # a linked record that now holds one: its link and customer stay as they were
    world.harness.edit(later, {"address.city": "Ro\x01me"})
    world.harness.edit(good, {"address.city": "Lyon"})
    second = world.sync()
    assert second.status == "succeeded", second.error
    assert world.customer_by_external_id(good)["address"]["city"] == "Lyon"
    assert world.customer_by_external_id(later)["address"]["city"] == "Rome"
    link = world.link(later)
    assert link is not None and link.base["address.city"] == "Rome"
    refused = [f for f in world.failures() if f.crm_id == later]
    assert [f.error_code for f in refused] == [NO_CONTROL_CHARACTERS]
    assert refused[0].customer_id == world.customer_by_external_id(later)["id"]
    assert "address.city:" in refused[0].error_message

    # once fixed in the CRM, the record syncs and its failure closes
    world.harness.edit(later, {"address.city": "Milan"})
    third = world.sync()
    assert third.status == "succeeded", third.error
    assert world.customer_by_external_id(later)["address"]["city"] == "Milan"
    assert not [f for f in world.failures() if f.crm_id == later]
