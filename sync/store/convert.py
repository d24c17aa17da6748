"""The store's edge: rows in, flat fields out, and back. The only place sync converts.

Deciding works on flat customer fields (:mod:`sync.decision`); the ``customers`` table holds
JSON columns (``address``, ``custom_data``). Loading a page turns rows into
:class:`BillingCustomer` / :class:`Link` values once, and writing a decision turns flat
fields into columns once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.customer import ADDRESS_PARTS, FieldValue, flatten
from sync.decision import BillingCustomer, ConflictOpen, ContactConflict, Link, NewCustomer
from sync.store.models import CustomerRow, LinkRow
from sync.store.repository import CUSTOMER_COLUMNS

_ADDRESSES = ("address", "ship_to_address")


def row_columns(row: CustomerRow) -> dict[str, Any]:
    """A customer row's public columns (everything but id, organisation and stamps)."""
    return {column: getattr(row, column) for column in CUSTOMER_COLUMNS}


def billing_customer(row: CustomerRow) -> BillingCustomer:
    """A customer row as flat fields."""
    custom_data = row.custom_data or {}
    fields = flatten(
        {
            "customer_name": row.customer_name,
            "external_id": row.external_id,
            "email": row.email,
            "phone_number": row.phone_number,
            "currency": row.currency,
            "address": row.address,
            "ship_to_address": row.ship_to_address,
            "custom_data": custom_data,
        }
    )
    return BillingCustomer(row.id, fields, custom_data)


def link_value(row: LinkRow) -> Link:
    return Link(
        row.id, row.customer_id, row.crm_id, row.state, row.base, row.crm_last, row.billing_last
    )


_SCALARS = ("customer_name", "external_id", "email", "phone_number", "currency")
_ADDRESS_KEYS = tuple(
    (group, tuple((part, f"{group}.{part}") for part in ADDRESS_PARTS)) for group in _ADDRESSES
)
_CUSTOM = "custom_data."


def new_customer_row(customer: NewCustomer) -> dict[str, Any]:
    """The row of a new customer made from validated flat fields (written out, not a loop
    over the names: a backfill converts every record)."""
    get = customer.fields.get
    row: dict[str, Any] = {"id": customer.id}
    for name in _SCALARS:
        row[name] = get(name)
    for group, keys in _ADDRESS_KEYS:
        address = {part: get(key) for part, key in keys}
        row[group] = address if any(address.values()) else None
    row["custom_data"] = {
        name[len(_CUSTOM) :]: value
        for name, value in customer.fields.items()
        if value is not None and name.startswith(_CUSTOM)
    }
    row["tax_info"] = []
    row["communications_enabled"] = True
    row["auto_charge_enabled"] = True
    return row


def changed_columns(customer: BillingCustomer, changes: Mapping[str, FieldValue]) -> dict[str, Any]:
    """The columns to write for validated flat ``changes`` of ``customer``: an address
    column is written whole, ``custom_data`` keeps the keys that are not flat fields."""
    after = {**customer.fields, **changes}
    return _columns(after, customer.custom_data, set(changes))


def _columns(
    fields: Mapping[str, FieldValue], custom_data: Mapping[str, Any], changed: set[str]
) -> dict[str, Any]:
    heads = {name.partition(".")[0] for name in changed}
    columns: dict[str, Any] = {}
    for head in heads:
        if head in _ADDRESSES:
            address = {part: fields.get(f"{head}.{part}") for part in ADDRESS_PARTS}
            columns[head] = address if any(address.values()) else None
        elif head == "custom_data":
            columns[head] = _custom_data(fields, custom_data, changed)
        else:
            columns[head] = fields.get(head)
    return columns


def _custom_data(
    fields: Mapping[str, FieldValue], custom_data: Mapping[str, Any], changed: set[str]
) -> dict[str, Any]:
    data = dict(custom_data)
    for name in changed:
        head, _, key = name.partition(".")
        if head != "custom_data":
            continue
        value = fields.get(name)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def conflict_row(
    organisation_id: str, connection_id: str, conflict: ConflictOpen | ContactConflict
) -> dict[str, Any]:
    """A conflict to open, as its row: a field or merge conflict on a link, or a contact's
    (on the customer, no link; its field ``contact.<name>``)."""
    contact = isinstance(conflict, ContactConflict)
    # (isinstance again where mypy must narrow the type)
    return {
        "id": conflict.id,
        "organisation_id": organisation_id,
        "connection_id": connection_id,
        "link_id": None if isinstance(conflict, ContactConflict) else conflict.link_id,
        "customer_id": conflict.customer_id,
        "crm_id": conflict.crm_id,
        "kind": "contact" if isinstance(conflict, ContactConflict) else conflict.kind,
        "field": f"contact.{conflict.field}" if contact else conflict.field,
        "base_value": conflict.base,
        "billing_value": conflict.billing,
        "crm_value": conflict.crm,
        "status": "open",
    }
