"""The customer model, as the billing product's Create Customer API defines it.

Every rule of DESIGN.md's table is validated here; an error names the field (pydantic's
``loc``) and the rule it broke (the message). The public shape — what the HTTP API returns
and ``--json`` prints — is :class:`Customer`.

Sync works on *flat* field names (``customer_name``, ``address.city``, ``custom_data.tier``);
:func:`flatten` and :func:`unflatten_into` convert between the two shapes.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Annotated, Any, Literal

import email_validator
import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

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


def _email(value: str) -> str:
    """An e-mail address, checked as pydantic's ``EmailStr`` checks it (and normalized)."""
    if _PLAIN_EMAIL.match(value) and value.rsplit(".", 1)[-1] not in _SPECIAL_USE:
        return value
    try:
        return str(email_validator.validate_email(value, check_deliverability=False).normalized)
    except email_validator.EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from error


_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
Email = Annotated[str, AfterValidator(_email)]

_ALPHA2 = frozenset(str(c.alpha_2) for c in pycountry.countries)
_CURRENCIES = frozenset(str(c.alpha_3) for c in pycountry.currencies)

OptionalText = Annotated[str | None, StringConstraints(max_length=1000)]


def country_from_name(name: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country name or code, or None if unknown: ISO's
    names and codes plus the declared aliases CRMs use ("Turkey", "UK", "Holland"), the
    same resolution the connectors use (``connectors/countries.py``)."""
    return country_code(unicodedata.normalize("NFC", name))


class Address(BaseModel):
    """A postal address. ``country_code`` is ISO 3166-1 alpha-2 and, when ``country`` is a
    recognisable country name or code too, must name the same country."""

    model_config = ConfigDict(extra="forbid")

    line1: OptionalText = None
    line2: OptionalText = None
    line3: OptionalText = None
    city: OptionalText = None
    state: OptionalText = None
    zipCode: OptionalText = None
    country: OptionalText = None
    country_code: str | None = None

    @field_validator("country_code")
    @classmethod
    def _alpha2(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        code = value.strip().upper()
        if code not in _ALPHA2:
            raise ValueError(f"must be an ISO 3166-1 alpha-2 country code, got {value!r}")
        return code

    @model_validator(mode="after")
    def _country_consistent(self) -> Address:
        if self.country and self.country_code:
            named = country_from_name(self.country)
            if named is not None and named != self.country_code:
                raise ValueError(
                    f"country_code {self.country_code!r} does not match country "
                    f"{self.country!r} ({named})"
                )
        return self


class TaxId(BaseModel):
    """One tax ID; only the six jurisdiction / type pairs of :data:`TAX_ID_KINDS`."""

    model_config = ConfigDict(extra="forbid")

    jurisdiction: str
    tax_type: str
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]

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

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
    email: Email | None = None
    communications: list[Communication] = Field(
        default_factory=lambda: list[Communication](["billing"])
    )


class CustomerFieldsMixin(BaseModel):
    """Validators shared by the create and the update shapes."""

    @field_validator("customer_name", check_fields=False)
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("phone_number", check_fields=False)
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not _PHONE.match(value.strip()):
            raise ValueError("must be a phone number with its country code, e.g. +1 415 555 0100")
        return value.strip()

    @field_validator("currency", check_fields=False)
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        code = value.strip().upper()
        if code not in _CURRENCIES:
            raise ValueError(f"must be an ISO 4217 currency code, got {value!r}")
        return code

    # "before": an empty email must become None before the e-mail check sees (and refuses) it.
    @field_validator("external_id", "email", mode="before", check_fields=False)
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() == "":
            return None
        return value


class CustomerBase(CustomerFieldsMixin):
    """The fields of the public shape, without ``id``."""

    model_config = ConfigDict(extra="forbid")

    customer_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    external_id: Annotated[str | None, StringConstraints(max_length=255)] = None
    email: Email | None = None
    phone_number: str | None = None
    address: Address | None = None
    ship_to_address: Address | None = None
    tax_info: list[TaxId] = Field(default_factory=list)
    custom_data: dict[str, Any] = Field(default_factory=dict)
    currency: str | None = None
    communications_enabled: bool = True
    auto_charge_enabled: bool = True
    business_entity_id: uuid.UUID | None = None


class CustomerIn(CustomerBase):
    """The body of Create Customer: the public fields, and optionally secondary contacts."""

    contacts: list[Contact] = Field(default_factory=list)


class CustomerPatch(CustomerFieldsMixin):
    """The body of Update Customer: only the fields given change; ``null`` clears one."""

    model_config = ConfigDict(extra="forbid")

    customer_name: Annotated[str | None, StringConstraints(min_length=1, max_length=255)] = None
    external_id: Annotated[str | None, StringConstraints(max_length=255)] = None
    email: Email | None = None
    phone_number: str | None = None
    address: Address | None = None
    ship_to_address: Address | None = None
    tax_info: list[TaxId] | None = None
    custom_data: dict[str, Any] | None = None
    currency: str | None = None
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
