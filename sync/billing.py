"""Writing CRM values into billing customers, validated by the customer model."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sync.customer import CustomerBase, FieldValue, unflatten_into
from sync.store.repository import CUSTOMER_COLUMNS


class InvalidRecord(ValueError):
    """CRM values that would make an invalid billing customer; the message names each
    field and the rule it broke."""


def describe_validation(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def apply_fields(public: dict[str, Any], changes: dict[str, FieldValue]) -> dict[str, Any]:
    """The customer's columns with flat ``changes`` written in, validated by the model.

    Raises :class:`InvalidRecord` when the result breaks a rule of the customer model.
    """
    merged = unflatten_into(public, changes)
    data = {column: merged.get(column) for column in CUSTOMER_COLUMNS}
    data["tax_info"] = data["tax_info"] or []
    data["custom_data"] = data["custom_data"] or {}
    data["communications_enabled"] = bool(
        True if data["communications_enabled"] is None else data["communications_enabled"]
    )
    data["auto_charge_enabled"] = bool(
        True if data["auto_charge_enabled"] is None else data["auto_charge_enabled"]
    )
    try:
        model = CustomerBase.model_validate(data)
    except ValidationError as error:
        raise InvalidRecord(describe_validation(error)) from error
    return model.model_dump(mode="json")
