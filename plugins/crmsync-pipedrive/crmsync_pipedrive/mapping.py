"""Pipedrive Organization <-> customer fields: pure functions.

A field map sends a customer field to a Pipedrive field: ``name``, an address part
(``address.route``, ``address.locality`` ...: the parts of Pipedrive's address field) or a
custom field's 40-character API key. Organizations have no phone or e-mail of their own:
map ``phone_number`` / ``email`` to custom fields to sync them.

Reading, a user-typed address whose street number Pipedrive keeps apart is read as
``"<street_number> <route>"`` in ``address.line1``; crmsync writes ``line1`` whole into
``route`` (and clears ``street_number``), so what it writes reads back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import CustomerFields, FieldValue

ADDRESS_PARTS = (
    "subpremise",
    "street_number",
    "route",
    "sublocality",
    "locality",
    "admin_area_level_1",
    "admin_area_level_2",
    "country",
    "postal_code",
)

DEFAULT_MAP: dict[str, str] = {
    "customer_name": "name",
    "address.line1": "address.route",
    "address.line2": "address.subpremise",
    "address.line3": "address.sublocality",
    "address.city": "address.locality",
    "address.state": "address.admin_area_level_1",
    "address.zipCode": "address.postal_code",
    "address.country": "address.country",
}


def field_map(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The default map with a connection's overrides (None unmaps a field)."""
    merged: dict[str, str | None] = {**DEFAULT_MAP, **overrides}
    return {k: v for k, v in merged.items() if v}


def _value(raw: Any) -> FieldValue:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str | bool | int | float):
        return raw
    if isinstance(raw, dict) and "value" in raw:  # monetary / option values
        return _value(raw["value"])
    return str(raw)


def to_fields(record: Mapping[str, Any], fmap: Mapping[str, str]) -> CustomerFields:
    """A v1 organization (list, recents, GET) as customer fields; empty is None."""
    fields: CustomerFields = {}
    for customer_field, crm_field in fmap.items():
        if crm_field.startswith("address."):
            part = crm_field.removeprefix("address.")
            value = _value(record.get(f"address_{part}"))
            number = _value(record.get("address_street_number"))
            if part == "route" and number is not None:
                value = f"{number} {value}" if value is not None else str(number)
        else:
            value = _value(record.get(crm_field))
        fields[customer_field] = value
    return fields


def address_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 organization's address as the v2 ``address`` object."""
    return {part: record.get(f"address_{part}") for part in ADDRESS_PARTS}


def to_body(
    fields: CustomerFields,
    fmap: Mapping[str, str],
    current_address: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A v2 create / update body for ``fields``. The address is one field in Pipedrive and
    is written whole: ``current_address`` supplies the parts the push does not change."""
    body: dict[str, Any] = {}
    address: dict[str, Any] = {}
    customs: dict[str, Any] = {}
    for customer_field, value in fields.items():
        crm_field = fmap.get(customer_field)
        if crm_field is None:
            continue
        if crm_field == "name":
            body["name"] = value
        elif crm_field.startswith("address."):
            address[crm_field.removeprefix("address.")] = value
        else:
            customs[crm_field] = value
    if address:
        whole = {k: v for k, v in (current_address or {}).items() if v not in (None, "")}
        if "route" in address:
            whole.pop("street_number", None)  # line1 is written whole into the route
        whole.update(address)
        body["address"] = {k: v for k, v in whole.items() if v not in (None, "")}
    if customs:
        body["custom_fields"] = customs
    return body


def touches_address_partly(fields: CustomerFields, fmap: Mapping[str, str]) -> bool:
    """Whether a push changes some, not all, mapped address parts (so the others must be
    read first: Pipedrive sets the address whole)."""
    parts = {c for c, f in fmap.items() if f.startswith("address.")}
    touched = parts & set(fields)
    return bool(touched) and touched != parts
