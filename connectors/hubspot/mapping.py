"""HubSpot company properties <-> customer fields: pure functions, no I/O.

Default map (customer field -> company property)::

    customer_name     name
    email             billing_email   (custom property)
    phone_number      phone
    address.line1     address         (HubSpot's street address is one line ...)
    address.line2     address2        (... and address2 a second one)
    address.line3     address3        (custom property: HubSpot has no third line)
    address.city      city
    address.state     state
    address.zipCode   zip
    address.country   country         (free text in HubSpot, e.g. "Germany")
    address.country_code  derived     (ISO 3166-1 alpha-2 from ``country`` as
                                       ``connectors/countries.py`` resolves it, None when it
                                       names no known country; on push, written as the
                                       country's name when ``address.country`` is not pushed
                                       too)

``config.field_map`` adds or replaces entries (``{"email": "billing_email",
"custom_data.segment": "segment"}``); ``None`` unmaps a field. Mapping
``address.country_code`` to a property stores the code there instead of deriving it.

HubSpot sends every value as text and an empty value as ``""`` or ``null``: both become
``None``. Pushing ``None`` writes ``""``, which clears the property in HubSpot.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import ApiUsage, CustomerFields, FieldValue
from connectors.countries import country_code, country_name

DEFAULT_MAP: dict[str, str] = {
    "customer_name": "name",
    "email": "billing_email",
    "phone_number": "phone",
    "address.line1": "address",
    "address.line2": "address2",
    "address.line3": "address3",
    "address.city": "city",
    "address.state": "state",
    "address.zipCode": "zip",
    "address.country": "country",
}
COUNTRY_CODE = "address.country_code"
#: the derived field's marker in a field map
DERIVED = ""


def field_map(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The connection's map: customer field -> property (``""`` = derived country code)."""
    fmap: dict[str, str] = dict(DEFAULT_MAP)
    for name, prop in overrides.items():
        if prop is None:
            fmap.pop(name, None)
        else:
            fmap[name] = prop
    if COUNTRY_CODE not in overrides and "address.country" in fmap:
        fmap[COUNTRY_CODE] = DERIVED
    if overrides.get(COUNTRY_CODE, "x") is None:
        fmap.pop(COUNTRY_CODE, None)
    return fmap


#: default properties that are custom: a portal has them only if someone created them
CUSTOM_PROPERTIES = {"address3": "HubSpot has no third address line", "billing_email": ""}


def why_missing(prop: str) -> str:
    """Why a portal may lack a default property, and how to have it, for the operator."""
    if prop in CUSTOM_PROPERTIES:
        what = CUSTOM_PROPERTIES[prop]
        return (
            f"{prop} is a custom company property{f' ({what})' if what else ''} that this "
            "portal does not have: create it (Settings > Properties) and set the connection "
            "again to map it"
        )
    return f"this portal has no company property {prop}"


def properties_of(fmap: Mapping[str, str]) -> list[str]:
    """The HubSpot properties to read for this map (derived fields need none of their own)."""
    return list(dict.fromkeys(p for p in fmap.values() if p))


def empty_to_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def to_fields(props: Mapping[str, Any], fmap: Mapping[str, str]) -> CustomerFields:
    """Customer fields from a company's ``properties``."""
    fields: CustomerFields = {}
    for name, prop in fmap.items():
        if prop:
            value = props.get(prop)
            fields[name] = None if value is None or value == "" else value
    if fmap.get(COUNTRY_CODE) == DERIVED:
        country = fields.get("address.country")
        if country is None and "address.country" not in fmap:
            country = props.get("country")
        fields[COUNTRY_CODE] = country_code(country) if isinstance(country, str) else None
    return fields


def to_text(value: FieldValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_properties(fields: Mapping[str, FieldValue], fmap: Mapping[str, str]) -> dict[str, str]:
    """Company ``properties`` to write for the given customer fields (unmapped ones are
    ignored; ``None`` clears)."""
    props: dict[str, str] = {}
    for name, value in fields.items():
        prop = fmap.get(name)
        if prop:
            props[prop] = to_text(value)
    if (
        fmap.get(COUNTRY_CODE) == DERIVED
        and COUNTRY_CODE in fields
        and "address.country" not in fields
        and fmap.get("address.country")
    ):
        code = fields[COUNTRY_CODE]
        country: str | None = country_name(code) if isinstance(code, str) else None
        props[fmap["address.country"]] = country or to_text(code)
    return props


def parse_time(value: Any) -> datetime | None:
    """HubSpot's ISO text (``2024-05-01T12:34:56.789Z``) or ms as a timezone-aware time."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_ms(value: Any) -> int | None:
    """Milliseconds since the epoch, exactly, from HubSpot's ISO text."""
    dt = parse_time(value)
    return None if dt is None else ms_of(dt)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware time, exactly (no float on the way)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def daily_usage(headers: Mapping[str, str]) -> ApiUsage | None:
    """The daily allowance from ``X-HubSpot-RateLimit-Daily`` and ``-Daily-Remaining``
    (https://developers.hubspot.com/docs/api/usage-details); None when absent (search
    answers carry no rate-limit headers)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    limit = lowered.get("x-hubspot-ratelimit-daily")
    remaining = lowered.get("x-hubspot-ratelimit-daily-remaining")
    if not limit or remaining is None:
        return None
    try:
        total, left = int(limit), int(remaining)
    except ValueError:
        return None
    return ApiUsage(used=max(0, total - left), limit=total, window="day")
