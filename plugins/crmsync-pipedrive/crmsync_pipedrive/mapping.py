"""Pipedrive Organization <-> customer fields: pure functions.

A field map sends a customer field to a Pipedrive field: ``name``, an address part
(``address.route``, ``address.locality`` ...: the parts of Pipedrive's address field) or a
custom field's 40-character API key. Organizations have no phone or e-mail of their own:
map ``phone_number`` / ``email`` to custom fields to sync them.

Reading, a user-typed address whose street number Pipedrive keeps apart is read as
``"<street_number> <route>"`` in ``address.line1``; crmsync writes ``line1`` whole into
``route`` (and clears ``street_number``), so what it writes reads back unchanged.

Pipedrive's address has a country name and no country code: ``address.country_code`` is
derived from the country (ISO 3166-1 alpha-2, as ``connectors.countries`` resolves it; None
when it names no known country) and, pushed without the country, written as the country's
name. Mapping ``address.country_code`` to a custom field keeps the code there instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import CustomerFields, FieldValue
from connectors.countries import country_code, country_name

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


COUNTRY_CODE = "address.country_code"
#: the derived field's marker in a field map (it has no Pipedrive field of its own)
DERIVED = ""


def field_map(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The default map with a connection's overrides (None unmaps a field); the country
    code is derived from the country unless mapped or unmapped explicitly."""
    merged: dict[str, str | None] = {**DEFAULT_MAP, **overrides}
    fmap = {k: v for k, v in merged.items() if v}
    if COUNTRY_CODE not in overrides and "address.country" in fmap:
        fmap[COUNTRY_CODE] = DERIVED
    return fmap


def crm_fields(fmap: Mapping[str, str]) -> list[str]:
    """The Pipedrive fields a map names (a derived field names none)."""
    return [f for f in fmap.values() if f != DERIVED]


def _with_country(fields: CustomerFields, fmap: Mapping[str, str]) -> CustomerFields:
    """A push's fields with a derived country code written as the country's name (when
    the country itself is not pushed), so that Pipedrive holds what the code says."""
    if fmap.get(COUNTRY_CODE) != DERIVED or COUNTRY_CODE not in fields:
        return fields
    rest = {k: v for k, v in fields.items() if k != COUNTRY_CODE}
    if "address.country" not in rest and "address.country" in fmap:
        code = fields[COUNTRY_CODE]
        rest["address.country"] = (country_name(code) or code) if isinstance(code, str) else None
    return rest


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
        if crm_field == DERIVED:
            continue
        if crm_field.startswith("address."):
            part = crm_field.removeprefix("address.")
            value = _value(record.get(f"address_{part}"))
            number = _value(record.get("address_street_number"))
            if part == "route" and number is not None:
                value = f"{number} {value}" if value is not None else str(number)
        else:
            value = _value(record.get(crm_field))
        fields[customer_field] = value
    if fmap.get(COUNTRY_CODE) == DERIVED:
        country = fields.get("address.country")
        fields[COUNTRY_CODE] = country_code(country) if isinstance(country, str) else None
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
    for customer_field, value in _with_country(fields, fmap).items():
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
    touched = parts & set(_with_country(fields, fmap))
    return bool(touched) and touched != parts
