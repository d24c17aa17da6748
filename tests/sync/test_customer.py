"""The customer model: every rule of DESIGN.md's table; an error names the field and rule."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from sync.customer import (
    MATCH_FIELDS,
    TAX_ID_KINDS,
    Address,
    Customer,
    CustomerIn,
    CustomerPatch,
    flatten,
    unflatten_into,
)


def errors_of(model: type[Any], data: dict[str, Any]) -> dict[str, str]:
    """{dotted field: message} of the validation errors of ``data``."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


def test_the_seed_example_and_its_defaults() -> None:
    customer = CustomerIn.model_validate(
        {"customer_name": "Acme Corporation", "email": "billing@acme.com"}
    )
    assert customer.communications_enabled is True
    assert customer.auto_charge_enabled is True
    assert customer.tax_info == []
    assert customer.custom_data == {}
    assert customer.business_entity_id is None


@pytest.mark.parametrize(
    ("data", "field", "rule"),
    [
        ({"customer_name": ""}, "customer_name", "at least 1 character"),
        ({"customer_name": "  \t"}, "customer_name", "must not be blank"),
        ({"customer_name": "x" * 256}, "customer_name", "at most 255 characters"),
        ({"external_id": "e" * 256}, "external_id", "at most 255 characters"),
        ({"email": "billing.acme.com"}, "email", "valid email address"),
        ({"phone_number": "415 555 0100"}, "phone_number", "country code"),
        ({"address": {"country_code": "ZZ"}}, "address.country_code", "ISO 3166-1 alpha-2"),
        ({"address": {"country_code": "FRA"}}, "address.country_code", "ISO 3166-1 alpha-2"),
        ({"address": {"country": "Germany", "country_code": "FR"}}, "address", "does not match"),
        ({"ship_to_address": {"country_code": "QQ"}}, "ship_to_address.country_code", "ISO"),
        ({"address": {"street": "1 Main"}}, "address.street", "Extra inputs"),
        (
            {"tax_info": [{"jurisdiction": "IND", "tax_type": "VAT", "value": "1"}]},
            "tax_info.0",
            "IND VAT is not accepted",
        ),
        (
            {"tax_info": [{"jurisdiction": "EU", "tax_type": "VAT", "value": " "}]},
            "tax_info.0.value",
            "at least 1 character",
        ),
        ({"custom_data": ["a"]}, "custom_data", "valid dictionary"),
        ({"custom_data": "text"}, "custom_data", "valid dictionary"),
        ({"currency": "EURO"}, "currency", "ISO 4217"),
        ({"currency": "ABC"}, "currency", "ISO 4217"),
        ({"communications_enabled": "maybe"}, "communications_enabled", "valid boolean"),
        ({"business_entity_id": "entity-1"}, "business_entity_id", "valid UUID"),
        ({"contacts": [{"name": "Ann", "communications": ["spam"]}]}, "contacts.0", "billing"),
        ({"id": str(uuid.uuid4())}, "id", "Extra inputs"),
    ],
)
def test_each_rule_names_its_field_and_rule(data: dict[str, Any], field: str, rule: str) -> None:
    errors = errors_of(CustomerIn, {"customer_name": "Acme", **data})
    matching = {f: m for f, m in errors.items() if f == field or f.startswith(field + ".")}
    assert matching, errors
    assert any(rule in message for message in matching.values()), matching


def test_customer_name_is_required() -> None:
    assert errors_of(CustomerIn, {"email": "a@b.co"}) == {"customer_name": "Field required"}


@pytest.mark.parametrize(("jurisdiction", "tax_type"), sorted(TAX_ID_KINDS))
def test_the_six_tax_id_kinds_are_accepted(jurisdiction: str, tax_type: str) -> None:
    tax = {"jurisdiction": jurisdiction, "tax_type": tax_type, "value": "123"}
    assert CustomerIn(customer_name="Acme", tax_info=[tax]).tax_info[0].value == "123"  # type: ignore[list-item]


def test_values_are_normalised() -> None:
    customer = CustomerIn.model_validate(
        {
            "customer_name": "Acme",
            "external_id": "",
            "email": "",
            "phone_number": " +44 20 7946 0958 ",
            "currency": "gbp",
            "address": {"country": "United Kingdom", "country_code": "gb"},
        }
    )
    assert customer.external_id is None
    assert customer.email is None
    assert customer.phone_number == "+44 20 7946 0958"
    assert customer.currency == "GBP"
    assert customer.address == Address(country="United Kingdom", country_code="GB")


def test_a_country_name_that_is_not_recognised_is_not_checked() -> None:
    address = Address(country="Atlantis", country_code="FR")
    assert address.country_code == "FR"


def test_patch_allows_any_subset_but_never_clears_the_name() -> None:
    patch = CustomerPatch.model_validate({"email": None, "currency": "usd"})
    assert patch.model_fields_set == {"email", "currency"}
    assert patch.currency == "USD"
    errors = errors_of(CustomerPatch, {"customer_name": None})
    assert any("customer_name" in m and "cannot be cleared" in m for m in errors.values())
    assert "customer_name" in errors_of(CustomerPatch, {"customer_name": " "})
    assert "email" in errors_of(CustomerPatch, {"email": "nope"})


def test_public_shape_round_trips_through_flat_fields() -> None:
    customer = Customer.model_validate(
        {
            "id": str(uuid.uuid4()),
            "customer_name": "Acme",
            "address": {"line1": "1 Main St", "city": "Paris", "country_code": "FR"},
            "custom_data": {"tier": "gold", "users": [1, 2]},
        }
    )
    public = customer.model_dump(mode="json")
    flat = flatten(public)
    assert set(MATCH_FIELDS) <= set(flat)
    assert flat["address.city"] == "Paris"
    assert flat["custom_data.tier"] == "gold"
    assert "custom_data.users" not in flat  # only scalars are synced per field
    changed = unflatten_into(public, {"address.city": "Lyon", "custom_data.tier": None})
    assert changed["address"]["city"] == "Lyon"
    assert changed["custom_data"] == {"users": [1, 2]}
