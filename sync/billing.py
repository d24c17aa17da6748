"""CRM values on their way into billing customers, validated by the customer model."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from sync.customer import FieldValue, validate_fields
from sync.errors import InvalidRecord as InvalidRecord


def describe_validation(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def validated(
    customer: Mapping[str, FieldValue], changes: Mapping[str, FieldValue]
) -> dict[str, FieldValue]:
    """``changes`` (flat fields) as the customer model stores them, once the whole customer
    ``customer`` (flat fields; empty for a new one) with the changes passes its rules.

    Raises :class:`InvalidRecord` naming each field and the rule it broke.
    """
    try:
        stored = validate_fields({**customer, **changes})
    except ValidationError as error:
        raise InvalidRecord(describe_validation(error)) from error
    return {name: stored.get(name) for name in changes}


def validated_new(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """A new customer's flat fields as the customer model stores them (every field; the
    ones not given are None). Raises :class:`InvalidRecord`."""
    try:
        return validate_fields(fields)
    except ValidationError as error:
        raise InvalidRecord(describe_validation(error)) from error
