"""The customer model, as the billing product's Create Customer API defines it.

Every rule of DESIGN.md's table is validated here; an error names the field (pydantic's
``loc``) and the rule it broke (the message). The public shape — what the HTTP API returns
and ``--json`` prints — is :class:`Customer`.

Sync works on *flat* field names (``customer_name``, ``address.city``, ``custom_data.tier``);
:func:`flatten` and :func:`unflatten_into` convert between the two shapes.
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import email_validator
import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from connectors.countries import country_code

FieldValue = str | bool | int | float | None

#: the tax IDs the billing product accepts: (jurisdiction, tax type)
TAX_ID_KINDS: frozenset[tuple[str, str]] = frozenset(
    {("IND", "GST"), ("USA", "VAT"), ("AUS", "GST"), ("EU", "VAT"), ("SG", "VAT"), ("FR", "VAT")}
)

ADDRESS_PARTS: tuple[str, ...] = (
    "line1",
    "line2",
    "line3",
    "city",
    "state",
    "zipCode",
    "country",
    "country_code",
)

#: the fields the match rule compares: name and billing address
MATCH_FIELDS: tuple[str, ...] = ("customer_name", *(f"address.{p}" for p in ADDRESS_PARTS))

_PHONE = re.compile(r"^\+[1-9][0-9 ().\-]{3,30}$")

# Plain ASCII addresses that email-validator accepts unchanged (a lower-case domain, no
# quoting, no dot at either end of a part, no IDNA-reserved "ab--" label): checked by
# this pattern in about 1 µs instead of ~100 µs, which matters when a backfill validates
# 100,000 customers. Anything else goes through email-validator itself.
_PLAIN_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:(?![a-z0-9-]{2}--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)

# --- the rules, shared by the public shape and by flat fields ------------------------------

#: the named rule that refuses control characters in text (PostgreSQL cannot even store a
#: NUL, and none of them belongs in a name or an address); newlines are allowed only in
#: the multi-line address lines (a Salesforce street holds its lines in one field)
NO_CONTROL_CHARACTERS = "no_control_characters"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _control_problem(value: str, pattern: re.Pattern[str]) -> str | None:
    found = pattern.search(value)
    if found is None:
        return None
    code, position = ord(found.group()), found.start()
    # the rule's name is in the words too: the dead letter and the CSV report show only them
    return (
        f"must not contain control characters ({NO_CONTROL_CHARACTERS}: "
        f"U+{code:04X} at position {position})"
    )


def _control_error(value: str, pattern: re.Pattern[str]) -> PydanticCustomError:
    return PydanticCustomError(NO_CONTROL_CHARACTERS, _control_problem(value, pattern) or "")


def single_line(value: str) -> str:
    """Text without control characters (the :data:`NO_CONTROL_CHARACTERS` rule)."""
    if _CONTROL.search(value) is None:  # one call per text field of every record: kept flat
        return value
    raise _control_error(value, _CONTROL)


def multi_line(value: str) -> str:
    """Text without control characters other than newlines."""
    if _CONTROL_BUT_NEWLINES.search(value) is None:
        return value
    raise _control_error(value, _CONTROL_BUT_NEWLINES)


def clean_json(value: Any) -> Any:
    """A JSON value whose keys and strings pass :func:`single_line` (``custom_data``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            single_line(key)
            clean_json(item)
    elif isinstance(value, list):
        for item in value:
            clean_json(item)
    elif isinstance(value, str):
        single_line(value)
    return value


def _empty_is_none(value: Any) -> Any:
    # an empty email must become None before the e-mail check sees (and refuses) it
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


def _email(value: str) -> str:
    """An e-mail address, checked as pydantic's ``EmailStr`` checks it (and normalized)."""
    if _PLAIN_EMAIL.match(value) and value.rsplit(".", 1)[-1] not in _SPECIAL_USE:
        return value
    try:
        return str(email_validator.validate_email(value, check_deliverability=False).normalized)
    except email_validator.EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from error


def _phone(value: str) -> str | None:
    if value.strip() == "":
        return None
    if not _PHONE.match(value.strip()):
        raise ValueError("must be a phone number with its country code, e.g. +1 415 555 0100")
    return value.strip()


def _currency(value: str) -> str | None:
    if value.strip() == "":
        return None
    code = value.strip().upper()
    if code not in _CURRENCIES:
        raise ValueError(f"must be an ISO 4217 currency code, got {value!r}")
    return code


def _alpha2(value: str) -> str | None:
    if value.strip() == "":
        return None
    code = value.strip().upper()
    if code not in _ALPHA2:
        raise ValueError(f"must be an ISO 3166-1 alpha-2 country code, got {value!r}")
    return code


def check_country(country: str | None, country_code: str | None) -> None:
    """A ``country_code`` must name the same country as ``country`` when that is a
    recognisable country name or code."""
    if country and country_code:
        named = country_from_name(country)
        if named is not None and named != country_code:
            raise ValueError(
                f"country_code {country_code!r} does not match country {country!r} ({named})"
            )


_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
_ALPHA2 = frozenset(str(c.alpha_2) for c in pycountry.countries)
_CURRENCIES = frozenset(str(c.alpha_3) for c in pycountry.currencies)

# A validator of an optional field sits inside its ``| None``, so that an empty field (most
# of a CRM record's) costs no Python call: a backfill validates every field of every record.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255),
    AfterValidator(_not_blank),
    AfterValidator(single_line),
]
ExternalId = Annotated[
    Annotated[str, StringConstraints(max_length=255), AfterValidator(single_line)] | None,
    BeforeValidator(_empty_is_none),
]
Email = Annotated[
    Annotated[str, AfterValidator(single_line), AfterValidator(_email)] | None,
    BeforeValidator(_empty_is_none),
]
Phone = Annotated[str, AfterValidator(single_line), AfterValidator(_phone)] | None
Currency = Annotated[str, AfterValidator(single_line), AfterValidator(_currency)] | None
OptionalText = (
    Annotated[str, StringConstraints(max_length=1000), AfterValidator(single_line)] | None
)
AddressLine = Annotated[str, StringConstraints(max_length=1000), AfterValidator(multi_line)] | None
CountryCode = Annotated[str, AfterValidator(single_line), AfterValidator(_alpha2)] | None
CustomData = Annotated[dict[str, Any], AfterValidator(clean_json)]


def country_from_name(name: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country name or code, or None if unknown: ISO's
    names and codes plus the declared aliases CRMs use ("Turkey", "UK", "Holland"), the
    same resolution the connectors use (``connectors/countries.py``)."""
    return country_code(unicodedata.normalize("NFC", name))


class Address(BaseModel):
    """A postal address. ``country_code`` is ISO 3166-1 alpha-2 and, when ``country`` is a
    recognisable country name or code too, must name the same country. The three lines may
    hold newlines; no other text may hold a control character."""

    model_config = ConfigDict(extra="forbid")

    line1: AddressLine = None
    line2: AddressLine = None
    line3: AddressLine = None
    city: OptionalText = None
    state: OptionalText = None
    zipCode: OptionalText = None
    country: OptionalText = None
    country_code: CountryCode = None

    @model_validator(mode="after")
    def _country_consistent(self) -> Address:
        check_country(self.country, self.country_code)
        return self


class TaxId(BaseModel):
    """One tax ID; only the six jurisdiction / type pairs of :data:`TAX_ID_KINDS`."""

    model_config = ConfigDict(extra="forbid")

    jurisdiction: str
    tax_type: str
    value: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
        AfterValidator(single_line),
    ]

    @model_validator(mode="after")
    def _known_kind(self) -> TaxId:
        if (self.jurisdiction, self.tax_type) not in TAX_ID_KINDS:
            allowed = ", ".join(f"{j} {t}" for j, t in sorted(TAX_ID_KINDS))
            raise ValueError(
                f"tax ID {self.jurisdiction} {self.tax_type} is not accepted (one of: {allowed})"
            )
        return self


Communication = Literal["billing", "updates", "legal"]


class Contact(BaseModel):
    """A secondary contact of a customer and the communications they receive."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
        AfterValidator(single_line),
    ]
    email: Email = None
    communications: list[Communication] = Field(
        default_factory=lambda: list[Communication](["billing"])
    )


class CustomerBase(BaseModel):
    """The fields of the public shape, without ``id``."""

    model_config = ConfigDict(extra="forbid")

    customer_name: Name
    external_id: ExternalId = None
    email: Email = None
    phone_number: Phone = None
    address: Address | None = None
    ship_to_address: Address | None = None
    tax_info: list[TaxId] = Field(default_factory=list)
    custom_data: CustomData = Field(default_factory=dict)
    currency: Currency = None
    communications_enabled: bool = True
    auto_charge_enabled: bool = True
    business_entity_id: uuid.UUID | None = None


class CustomerIn(CustomerBase):
    """The body of Create Customer: the public fields, and optionally secondary contacts."""

    contacts: list[Contact] = Field(default_factory=list)


class CustomerPatch(BaseModel):
    """The body of Update Customer: only the fields given change; ``null`` clears one."""

    model_config = ConfigDict(extra="forbid")

    customer_name: Name | None = None
    external_id: ExternalId = None
    email: Email = None
    phone_number: Phone = None
    address: Address | None = None
    ship_to_address: Address | None = None
    tax_info: list[TaxId] | None = None
    custom_data: CustomData | None = None
    currency: Currency = None
    communications_enabled: bool | None = None
    auto_charge_enabled: bool | None = None
    business_entity_id: uuid.UUID | None = None
    contacts: list[Contact] | None = None

    @model_validator(mode="after")
    def _name_not_cleared(self) -> CustomerPatch:
        if "customer_name" in self.model_fields_set and self.customer_name is None:
            raise ValueError("customer_name is required and cannot be cleared")
        return self


class Customer(CustomerBase):
    """The public shape of a customer (DESIGN.md): its ``id`` and the public fields."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID


# --- flat field names, as sync and the connectors speak them -----------------------------

_SCALAR_NAMES = ("customer_name", "external_id", "email", "phone_number", "currency")
_GROUPS = ("address", "ship_to_address")
_INT64 = 2**63


def crm_value_problem(value: object) -> str | None:
    """Why a CRM value cannot be kept as a field value at all (whichever way its field
    syncs: the base keeps it), or None: a field value is text without control characters,
    a boolean, a 64-bit integer, a finite number, or empty."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _control_problem(value, _CONTROL_BUT_NEWLINES)
    if isinstance(value, int):
        return None if -_INT64 <= value < _INT64 else "must be a number of at most 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    return f"must be text, a number, a boolean or empty, not {type(value).__name__}"


def crm_fields_problem(fields: Mapping[str, object]) -> str | None:
    """Why a CRM record's values cannot be kept at all (``field: problem; ...``, by
    :func:`crm_value_problem`), or None. A record with such a value goes to the dead letter
    whole, whichever way its fields sync: its base and last-seen values would hold it."""
    values = [v for v in fields.values() if v is not None]
    texts = [v for v in values if type(v) is str]
    if len(texts) == len(values) and _CONTROL_BUT_NEWLINES.search("".join(texts)) is None:
        return None  # the usual record: text or empty, all clean, one search
    problems = []
    for name, value in fields.items():
        problem = crm_value_problem(value)
        if problem is not None:
            problems.append(f"{name}: {problem}")
    return "; ".join(problems) or None


def contact_problem(name: str | None, email: str | None) -> str | None:
    """Why a CRM contact cannot become a secondary contact, or None: its name and e-mail
    are single lines (:data:`NO_CONTROL_CHARACTERS`) of at most 255 and 320 characters."""
    if (
        type(name) is str
        and len(name) <= 255
        and (email is None or (type(email) is str and len(email) <= 320))
        and _CONTROL.search(name + (email or "")) is None
    ):
        return None  # the usual contact: one search
    problems = []
    for field, value, longest in (("name", name, 255), ("email", email, 320)):
        if not isinstance(value, str):
            continue
        problem = _control_problem(value, _CONTROL)
        if problem is None and len(value) > longest:
            problem = f"must have at most {longest} characters"
        if problem is not None:
            problems.append(f"{field}: {problem}")
    return "; ".join(problems) or None


class _Flat(BaseModel):
    """The customer model's rules over flat fields; ``custom_data.<key>`` fields are the
    extra ones."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _across_fields(self) -> _Flat:
        for group in _GROUPS:
            country, code = (
                getattr(self, f"{group}_country"),
                getattr(self, f"{group}_country_code"),
            )
            try:
                check_country(country, code)
            except ValueError as error:
                raise ValueError(f"{group}: {error}") from None
        for name, value in (self.__pydantic_extra__ or {}).items():
            if not name.startswith("custom_data.") or name == "custom_data.":
                raise ValueError(f"{name}: not a customer field")
            problem = crm_value_problem(value)
            if problem is None and isinstance(value, str):
                problem = _control_problem(value, _CONTROL)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
        return self


def _flat_field(info: Any, alias: str) -> tuple[Any, Any]:
    default = ... if info.is_required() else None
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return annotation, Field(default, alias=alias)


_FLAT_FIELDS: dict[str, Any] = {
    **{name: _flat_field(CustomerBase.model_fields[name], name) for name in _SCALAR_NAMES},
    **{
        f"{group}_{part}": _flat_field(Address.model_fields[part], f"{group}.{part}")
        for group in _GROUPS
        for part in ADDRESS_PARTS
    },
}
#: the rules of :class:`CustomerBase` and :class:`Address`, over flat fields
FlatCustomer = create_model("FlatCustomer", __base__=_Flat, **_FLAT_FIELDS)


def validate_fields(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """Flat fields of a whole customer, checked by the customer model's rules, as the model
    stores them (normalized). Raises pydantic's ``ValidationError``."""
    stored: dict[str, FieldValue] = FlatCustomer.model_validate(fields).model_dump(by_alias=True)
    return stored


def flatten(customer: dict[str, Any]) -> dict[str, FieldValue]:
    """A customer (public-shape dict) as flat fields: ``address.city``, ``custom_data.k``.

    Only scalar fields are flattened; ``tax_info`` and ``contacts`` are not synced per field.
    """
    flat: dict[str, FieldValue] = {}
    for key in ("customer_name", "external_id", "email", "phone_number", "currency"):
        flat[key] = customer.get(key)
    for part in ("address", "ship_to_address"):
        address = customer.get(part) or {}
        for sub in ADDRESS_PARTS:
            flat[f"{part}.{sub}"] = address.get(sub)
    for key, value in (customer.get("custom_data") or {}).items():
        if value is None or isinstance(value, str | bool | int | float):
            flat[f"custom_data.{key}"] = value
    return flat


def unflatten_into(customer: dict[str, Any], fields: dict[str, FieldValue]) -> dict[str, Any]:
    """A copy of ``customer`` (public-shape dict) with flat ``fields`` written into it."""
    result = dict(customer)
    nested: dict[str, dict[str, Any]] = {}
    for name, value in fields.items():
        head, _, tail = name.partition(".")
        if not tail:
            result[head] = value
            continue
        part = nested.get(head)
        if part is None:
            part = nested[head] = dict(result.get(head) or {})
        if value is None and head == "custom_data":
            part.pop(tail, None)
        else:
            part[tail] = value
    for head, part in nested.items():
        result[head] = part if (head == "custom_data" or any(part.values())) else None
    return result
