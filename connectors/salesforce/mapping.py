"""Salesforce Account fields <-> customer fields: pure functions, no I/O.

The default map (overridable per connection through ``ConnectionConfig.field_map``)::

    customer_name            Name
    phone_number             Phone
    currency                 CurrencyIsoCode
    address.line1..line3     BillingStreet (one multi-line text field: lines split on "\\n";
                             lines past the third are joined into line3 with ", ")
    address.city             BillingCity
    address.state            BillingState (BillingStateCode when the state name is empty and
                             address.country_code maps to BillingCountryCode: picklists on)
    address.zipCode          BillingPostalCode
    address.country          BillingCountry
    address.country_code     BillingCountryCode
    ship_to_address.*        the same parts of Shipping*

``email`` has no standard Account field; map it per connection (``{"email":
"Billing_Email__c"}``), as any ``custom_data.<key>``. An empty string and a null both read
as None (Salesforce stores an empty text value as null anyway).
See https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_account.htm
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import CustomerFields, FieldValue

LINES = ("line1", "line2", "line3")
_ADDRESS_PARTS = {
    "city": "City",
    "state": "State",
    "zipCode": "PostalCode",
    "country": "Country",
    "country_code": "CountryCode",
}


def default_field_map() -> dict[str, str]:
    """Customer field -> Account field, before per-connection overrides."""
    out = {"customer_name": "Name", "phone_number": "Phone", "currency": "CurrencyIsoCode"}
    for group, prefix in (("address", "Billing"), ("ship_to_address", "Shipping")):
        for line in LINES:
            out[f"{group}.{line}"] = f"{prefix}Street"
        for part, suffix in _ADDRESS_PARTS.items():
            out[f"{group}.{part}"] = f"{prefix}{suffix}"
    return out


def split_street(street: str | None) -> tuple[str | None, str | None, str | None]:
    """``BillingStreet`` -> (line1, line2, line3); lines past the third join line3."""
    if not street:
        return None, None, None
    if "\n" not in street and "\r" not in street:
        return street, None, None
    lines = street.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(lines) > 3:
        rest = [line for line in lines[2:] if line.strip()]
        lines = [*lines[:2], ", ".join(rest)]
    padded = [*lines, "", "", ""][:3]
    return padded[0] or None, padded[1] or None, padded[2] or None


def join_street(line1: FieldValue, line2: FieldValue, line3: FieldValue) -> str | None:
    """(line1, line2, line3) -> ``BillingStreet``; trailing empty lines dropped, None when
    every line is empty."""
    lines = ["" if v is None else str(v) for v in (line1, line2, line3)]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) if lines else None


@dataclass(frozen=True)
class StreetGroup:
    """The address lines kept in one multi-line Salesforce field."""

    sf_field: str
    #: (line name, customer field) for the lines mapped to ``sf_field``, in line order
    lines: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AccountMapping:
    """A compiled field map: which fields to select, and both conversions."""

    #: customer field -> Salesforce field, for the plain (one-to-one) fields
    simple: tuple[tuple[str, str], ...]
    streets: tuple[StreetGroup, ...]
    #: ``StateCode`` fallbacks: (customer field, Salesforce code field)
    state_codes: tuple[tuple[str, str], ...]
    mapped_fields: tuple[str, ...]
    sf_fields: tuple[str, ...]

    def to_customer(self) -> Callable[[Mapping[str, Any]], CustomerFields]:
        """A fast record -> customer fields function.

        The function is generated once per mapping as straight-line code (one dict display,
        no loop or per-field call), because a full pull converts every record of the CRM:
        this is several times faster than a loop over the field map."""
        lines = ["def convert(record):", "    get = record.get"]
        for n, group in enumerate(self.streets):
            lines.append(f"    street{n} = split_street(get({group.sf_field!r}))")
        items = []
        for customer_field, sf_field in self.simple:
            value = f"(v if (v := get({sf_field!r})) != '' else None)"
            code = dict(self.state_codes).get(customer_field)
            if code is not None:
                value = f"({value} or get({code!r}) or None)"
            items.append(f"{customer_field!r}: {value}")
        for n, group in enumerate(self.streets):
            for line, customer_field in group.lines:
                items.append(f"{customer_field!r}: street{n}[{int(line[-1]) - 1}]")
        lines.append("    return {" + ", ".join(items) + "}")
        namespace: dict[str, Any] = {"split_street": split_street}
        exec("\n".join(lines), namespace)  # field names are embedded with repr(): no injection
        convert: Callable[[Mapping[str, Any]], CustomerFields] = namespace["convert"]
        return convert

    def to_salesforce(self, fields: CustomerFields) -> dict[str, Any]:
        """Customer fields (only those to write) -> Account values. Address lines that share
        one Salesforce field must be given together (see :meth:`missing_lines`)."""
        sf_by_customer = dict(self.simple)
        out: dict[str, Any] = {}
        for customer_field, value in fields.items():
            sf_field = sf_by_customer.get(customer_field)
            if sf_field is not None:
                out[sf_field] = None if value == "" else value
        for group in self.streets:
            given = {line: fields[cf] for line, cf in group.lines if cf in fields}
            if given:
                out[group.sf_field] = join_street(
                    given.get("line1"), given.get("line2"), given.get("line3")
                )
        return out

    def missing_lines(self, fields: CustomerFields) -> list[StreetGroup]:
        """Street groups of which ``fields`` holds some lines but not all (the others must be
        read from the CRM before the street can be written)."""
        out = []
        for group in self.streets:
            present = [cf in fields for _, cf in group.lines]
            if any(present) and not all(present):
                out.append(group)
        return out


def field_map_with(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """Customer field -> Account field: the default map with ``overrides`` applied (a None
    value unmaps a field)."""
    field_map: dict[str, str] = default_field_map()
    for customer_field, sf_field in overrides.items():
        if sf_field is None:
            field_map.pop(customer_field, None)
        else:
            field_map[customer_field] = sf_field
    return field_map


#: why a default field can be missing from an org's Account describe
OPTIONAL_BECAUSE = {
    "CurrencyIsoCode": "Account.CurrencyIsoCode exists only in orgs with multi-currency on",
    "CountryCode": "exists only with state and country/territory picklists on",
    "StateCode": "exists only with state and country/territory picklists on",
}


def why_missing(sf_field: str) -> str:
    """Why the org's Account may lack a default field, for the operator."""
    for suffix, why in OPTIONAL_BECAUSE.items():
        if sf_field.endswith(suffix):
            return why if why.startswith("Account.") else f"Account.{sf_field} {why}"
    return f"this org's Account has no field {sf_field}"


def build_mapping(overrides: Mapping[str, str | None]) -> AccountMapping:
    """The default map with ``overrides`` applied (a None value unmaps a field)."""
    field_map = field_map_with(overrides)
    simple: list[tuple[str, str]] = []
    grouped: dict[str, list[tuple[str, str]]] = {}
    for customer_field, sf_field in field_map.items():
        group, _, part = customer_field.rpartition(".")
        if (
            group in ("address", "ship_to_address")
            and part in LINES
            and sf_field.endswith("Street")
        ):
            grouped.setdefault(sf_field, []).append((part, customer_field))
        else:
            simple.append((customer_field, sf_field))
    streets = tuple(StreetGroup(sf, tuple(sorted(lines))) for sf, lines in grouped.items())
    # State and country picklists put the code in *StateCode; read it when the state name is
    # empty. Only when the connection maps *CountryCode (so the picklists are on: without
    # them the *Code fields do not exist and selecting one would fail the query).
    state_codes = tuple(
        (cf, sf + "Code")
        for cf, sf in simple
        if cf.endswith(".state")
        and sf in ("BillingState", "ShippingState")
        and field_map.get(cf.replace(".state", ".country_code"))
        == sf[: -len("State")] + "CountryCode"
    )
    sf_fields = list(dict.fromkeys([sf for _, sf in simple] + [g.sf_field for g in streets]))
    sf_fields += [code for _, code in state_codes if code not in sf_fields]
    return AccountMapping(
        simple=tuple(simple),
        streets=streets,
        state_codes=state_codes,
        mapped_fields=tuple(field_map),
        sf_fields=tuple(sf_fields),
    )
