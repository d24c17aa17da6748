"""The Account and Contact objects the sandbox knows: fields, types, what is writable.

Values are stored as the REST API shows them: text as ``str`` (never ``""``: Salesforce
stores an empty string as null), booleans as ``bool``, date-times as the API's fixed-width
UTC text ``2024-01-01T00:00:00.000+0000``, which sorts in time order as a plain string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

TEXT_TYPES = frozenset({"string", "textarea", "picklist", "email", "phone", "url"})
ID_TYPES = frozenset({"id", "reference"})


@dataclass(frozen=True)
class FieldDef:
    name: str
    label: str
    type: str
    length: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    external_id: bool = False
    unique: bool = False
    custom: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "length": self.length,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "externalId": self.external_id,
            "unique": self.unique,
            "custom": self.custom,
            "caseSensitive": False,
            "idLookup": self.name == "Id" or self.external_id,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "datetime": "xsd:dateTime",
    "double": "xsd:double",
    "address": "urn:address",
}


def _system(name: str, label: str, type_: str) -> FieldDef:
    return FieldDef(
        name,
        label,
        type_,
        18 if type_ in ID_TYPES else 0,
        createable=False,
        updateable=False,
        nillable=type_ != "boolean",
    )


def _stamps() -> list[FieldDef]:
    return [
        _system("CreatedDate", "Created Date", "datetime"),
        _system("CreatedById", "Created By ID", "reference"),
        _system("LastModifiedDate", "Last Modified Date", "datetime"),
        _system("LastModifiedById", "Last Modified By ID", "reference"),
        _system("SystemModstamp", "System Modstamp", "datetime"),
    ]


#: the parts of a compound address field, as its JSON object names them
ADDRESS_PARTS = {
    "street": "Street",
    "city": "City",
    "state": "State",
    "stateCode": "StateCode",
    "postalCode": "PostalCode",
    "country": "Country",
    "countryCode": "CountryCode",
}


def address_value(rec: dict[str, object], prefix: str) -> dict[str, object] | None:
    """A compound address (``BillingAddress``) as the REST API shows it: its parts, and no
    geolocation; null when every part is."""
    parts = {
        key: rec.get(prefix + suffix)
        for key, suffix in ADDRESS_PARTS.items()
        if prefix + suffix in rec  # stateCode / countryCode: only with the picklists on
    }
    if all(v is None for v in parts.values()):
        return None
    return {**parts, "geocodeAccuracy": None, "latitude": None, "longitude": None}


def _address(prefix: str, label: str) -> list[FieldDef]:
    """The parts, and the compound field over them, which is read-only: "Compound fields
    are accessible only through the SOAP and REST APIs ... you can't update the compound
    field directly; update its components"
    (https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/compound_fields_address.htm)."""
    return [
        FieldDef(
            f"{prefix}Address", f"{label} Address", "address", createable=False, updateable=False
        ),
        FieldDef(f"{prefix}Street", f"{label} Street", "textarea", 255),
        FieldDef(f"{prefix}City", f"{label} City", "string", 40),
        FieldDef(f"{prefix}State", f"{label} State/Province", "string", 80),
        FieldDef(f"{prefix}StateCode", f"{label} State/Province Code", "picklist", 10),
        FieldDef(f"{prefix}PostalCode", f"{label} Zip/Postal Code", "string", 20),
        FieldDef(f"{prefix}Country", f"{label} Country", "string", 80),
        FieldDef(f"{prefix}CountryCode", f"{label} Country Code", "picklist", 10),
    ]


@dataclass
class ObjectDef:
    name: str
    label: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    #: lower-case name -> canonical name (SOQL and JSON field names are case-insensitive)
    by_lower: dict[str, str] = field(default_factory=dict)

    def add(self, f: FieldDef) -> None:
        self.fields[f.name] = f
        self.by_lower[f.name.lower()] = f.name

    def remove(self, name: str) -> None:
        self.fields.pop(name, None)
        self.by_lower.pop(name.lower(), None)

    def lookup(self, name: str) -> FieldDef | None:
        canonical = self.by_lower.get(name.lower())
        return self.fields[canonical] if canonical else None

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "keyPrefix": self.key_prefix,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "custom": False,
            "fields": [f.describe() for f in self.fields.values()],
            "urls": {
                "sobject": f"/services/data/v59.0/sobjects/{self.name}",
                "describe": f"/services/data/v59.0/sobjects/{self.name}/describe",
            },
        }


#: ``CurrencyIsoCode`` exists only in orgs with multi-currency enabled, which a new org is
#: not ("Available only for organizations with the multicurrency feature enabled":
#: https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_account.htm)
CURRENCY_ISO_CODE = FieldDef("CurrencyIsoCode", "Account Currency", "picklist", 3)


def account_object(
    external_id_field: str = "crmsync_id__c", *, multi_currency: bool = False
) -> ObjectDef:
    obj = ObjectDef("Account", "Account", "001")
    for f in [
        FieldDef("Id", "Account ID", "id", 18, createable=False, updateable=False, nillable=False),
        _system("IsDeleted", "Deleted", "boolean"),
        _system("MasterRecordId", "Master Record ID", "reference"),
        FieldDef("Name", "Account Name", "string", 255, nillable=False),
        *_address("Billing", "Billing"),
        *_address("Shipping", "Shipping"),
        FieldDef("Phone", "Account Phone", "phone", 40),
        FieldDef("Website", "Website", "url", 255),
        *([CURRENCY_ISO_CODE] if multi_currency else []),
        FieldDef("Description", "Account Description", "textarea", 32000),
        *_stamps(),
        FieldDef(
            external_id_field,
            "crmsync ID",
            "string",
            255,
            external_id=True,
            unique=True,
            custom=True,
        ),
        FieldDef("Legacy_Id__c", "Legacy ID", "string", 255, external_id=True, custom=True),
        FieldDef("Billing_Email__c", "Billing Email", "email", 80, custom=True),
        FieldDef("Segment__c", "Segment", "string", 255, custom=True),
    ]:
        obj.add(f)
    return obj


def contact_object() -> ObjectDef:
    obj = ObjectDef("Contact", "Contact", "003")
    for f in [
        FieldDef("Id", "Contact ID", "id", 18, createable=False, updateable=False, nillable=False),
        _system("IsDeleted", "Deleted", "boolean"),
        _system("MasterRecordId", "Master Record ID", "reference"),
        FieldDef("AccountId", "Account ID", "reference", 18),
        FieldDef("FirstName", "First Name", "string", 40),
        FieldDef("LastName", "Last Name", "string", 80, nillable=False),
        FieldDef("Name", "Full Name", "string", 121, createable=False, updateable=False),
        FieldDef("Email", "Email", "email", 80),
        FieldDef("Phone", "Business Phone", "phone", 40),
        # a custom multi-select picklist (values separated by ";") for communications
        FieldDef("Communications__c", "Communications", "multipicklist", 4099, custom=True),
        *_stamps(),
    ]:
        obj.add(f)
    return obj


# -- date-times -------------------------------------------------------------------------

_DT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$"
)


def format_ms(ms: int) -> str:
    """Milliseconds since the epoch as ``2024-01-01T00:00:00.000+0000``."""
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}+0000"


def parse_datetime(text: str) -> int | None:
    """Milliseconds since the epoch from an ISO date or date-time (``Z``, ``+0000`` or
    ``+00:00``); None when ``text`` is not one."""
    m = _DT.match(text.strip())
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    try:
        dt = datetime(
            int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    ms = int(dt.timestamp()) * 1000 + (int((frac or "0")[:3].ljust(3, "0")))
    if tz and tz != "Z":
        sign = -1 if tz[0] == "+" else 1
        digits = tz[1:].replace(":", "")
        ms += sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    return ms


def canonical_datetime(text: str) -> str | None:
    ms = parse_datetime(text)
    return None if ms is None else format_ms(ms)


#: the fields State and Country/Territory Picklists add to Account
PICKLIST_CODES = (
    "BillingStateCode",
    "BillingCountryCode",
    "ShippingStateCode",
    "ShippingCountryCode",
)


def picklist_fields() -> list[FieldDef]:
    """Account's state and country code fields (:data:`PICKLIST_CODES`)."""
    return [f for f in account_object().fields.values() if f.name in PICKLIST_CODES]
