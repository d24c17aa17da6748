"""Customers from a CSV file: the template, row-by-row validation, then one bulk import.

The format (``crmsync customers sample-csv`` writes it, with one example row):

- UTF-8 (a BOM is fine), comma-separated, a header row then one customer per row; blank
  lines are skipped. Only ``customer_name`` is a required column; any subset of the others
  may be given, in any order. An unknown column is an error that names it.
- ``customer_name``, ``external_id``, ``email``, ``phone_number``, ``currency``,
  ``business_entity_id``: text.
- ``address.line1`` … ``address.country_code`` and ``ship_to_address.*``: the address, one
  column per part (``line1, line2, line3, city, state, zipCode, country, country_code``); a row
  whose cells of one address are all empty has no such address.
- ``tax_info``: a JSON list of ``{"jurisdiction", "tax_type", "value"}`` objects, e.g.
  ``[{"jurisdiction": "EU", "tax_type": "VAT", "value": "DE123456789"}]``.
- ``custom_data``: a JSON object, e.g. ``{"exempt_tax": true}``.
- ``communications_enabled``, ``auto_charge_enabled``: ``true`` or ``false`` (empty: true).

An empty cell means "no value". A row describes the whole customer: importing it over an
existing customer (same ``external_id``; without one, same ``email``) sets every column the
file has. Secondary contacts have a file of their own (:func:`import_contacts_csv`, at the
end of this module).

Every row is validated — by the customer model, and against the store (business entities,
``email`` used by another customer, ``business_entity_id`` changes, duplicates within the
file) — before anything is written. A file with bad rows imports nothing unless
``skip_invalid`` is set; then the good rows are imported and the bad ones reported.
Importing is idempotent on ``external_id`` (:func:`sync.customers.import_customers`).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from sync import contacts
from sync.contacts import ContactPatch
from sync.customer import ADDRESS_PARTS, Contact, CustomerIn
from sync.customers import import_customers
from sync.errors import CsvFileError as CsvFileError
from sync.store import contact_repository, repository
from sync.store.models import CustomerRow

ADDRESS_COLUMNS = ("address", "ship_to_address")
JSON_COLUMNS = ("tax_info", "custom_data")
BOOLEAN_COLUMNS = ("communications_enabled", "auto_charge_enabled")


def _csv_columns(column: str) -> tuple[str, ...]:
    """A store column as the file's columns: an address is one column per part."""
    if column in ADDRESS_COLUMNS:
        return tuple(f"{column}.{part}" for part in ADDRESS_PARTS)
    return (column,)


#: every column of the format, in the template's order: the customer's columns
COLUMNS: tuple[str, ...] = tuple(
    name for column in repository.CUSTOMER_COLUMNS for name in _csv_columns(column)
)

_EXAMPLE_ADDRESS = {
    "line1": "1 Market Street",
    "line2": "Suite 100",
    "line3": "",
    "city": "San Francisco",
    "state": "CA",
    "zipCode": "94105",
    "country": "United States",
    "country_code": "US",
}

#: the template's example row: refused when imported unchanged
EXAMPLE_ROW: dict[str, str] = {
    "customer_name": "John Doe",
    "external_id": "EXAMPLE-0001",
    "email": "john.doe@example.com",
    "phone_number": "+1 415 555 0100",
    **{f"address.{part}": value for part, value in _EXAMPLE_ADDRESS.items()},
    **{f"ship_to_address.{part}": value for part, value in _EXAMPLE_ADDRESS.items()},
    "tax_info": '[{"jurisdiction": "USA", "tax_type": "VAT", "value": "US123456789"}]',
    "custom_data": '{"exempt_tax": false}',
    "currency": "USD",
    "communications_enabled": "true",
    "auto_charge_enabled": "true",
    "business_entity_id": "",
}


@dataclass(frozen=True)
class RowError:
    """A bad row: its line in the file (the header is line 1) and each ``field: rule``."""

    line: int
    errors: list[str]


@dataclass(frozen=True)
class ParsedRow:
    line: int
    customer: CustomerIn


@dataclass
class ParsedFile:
    rows: list[ParsedRow] = field(default_factory=list)
    invalid: list[RowError] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import did. ``imported`` is False when bad rows stopped it (nothing written)."""

    imported: bool
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": len(self.invalid),
            "errors": [{"line": e.line, "errors": e.errors} for e in self.invalid],
        }


# --- the template ------------------------------------------------------------------------


def template() -> str:
    """The CSV template: every column, and the example row (``John Doe``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerow([EXAMPLE_ROW[column] for column in COLUMNS])
    return out.getvalue()


# --- reading and validating ----------------------------------------------------------------


def read_text(path: Path) -> str:
    """The file's text (UTF-8, BOM removed), or :class:`CsvFileError` if it is not text."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CsvFileError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvFileError(
            f"{path} is not a UTF-8 text file (byte {error.start}): expected a CSV file"
        ) from error
    if "\x00" in text.partition("\n")[0]:
        # a header with NULs is a UTF-16 file or no text at all; a NUL further down is a
        # bad cell, reported with its row by the customer model's rule
        raise CsvFileError(f"{path} contains NUL bytes: expected a CSV text file")
    return text


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells) for each record; blank records skipped."""
    # Python 3.11's csv module stops at a NUL ("line contains NUL"): it travels through the
    # reader as a character the text does not hold, and comes back in its cell, where the
    # customer model refuses it (no_control_characters) and the row is reported
    stand_in = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
    nul = "\x00" in text
    reader = csv.reader(io.StringIO(text.replace("\x00", stand_in), newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise CsvFileError(f"line {start}: not valid CSV: {error}") from error
        if nul:
            cells = [cell.replace(stand_in, "\x00") for cell in cells]
        if any(cell.strip() for cell in cells):
            yield start, cells


def _header(
    cells: list[str],
    columns: tuple[str, ...] = COLUMNS,
    template_command: str = "crmsync customers sample-csv",
) -> list[str]:
    names = [cell.strip() for cell in cells]
    while names and not names[-1]:  # trailing empty columns, as spreadsheets write them
        names.pop()
    if "" in names:
        raise CsvFileError(f"column {names.index('') + 1} of the header has no name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CsvFileError(f"duplicate columns: {', '.join(duplicates)}")
    unknown = [n for n in names if n not in columns]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, columns, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise CsvFileError(
            f"unknown columns: {', '.join(hints)}; the columns are those of `{template_command}`"
        )
    return names


def _is_example(row: Mapping[str, str]) -> bool:
    return all(value == EXAMPLE_ROW[column] for column, value in row.items())


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(f"must be true or false, got {value!r}")


def _json(column: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        example = EXAMPLE_ROW[column]
        raise ValueError(f"is not valid JSON ({error.msg}); e.g. {example}") from error


def _to_data(row: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """A row's cells as a customer body, and the errors of cells that cannot be converted."""
    data: dict[str, Any] = {}
    errors: list[str] = []
    addresses: dict[str, dict[str, str]] = {}
    for column, value in row.items():
        if not value:
            continue
        head, _, part = column.partition(".")
        if part:
            addresses.setdefault(head, {})[part] = value
            continue
        try:
            if column in BOOLEAN_COLUMNS:
                data[column] = _boolean(value)
            elif column in JSON_COLUMNS:
                data[column] = _json(column, value)
            else:
                data[column] = value
        except ValueError as error:
            errors.append(f"{column}: {error}")
    data.update(addresses)
    return data, errors


def _model_errors(error: ValidationError) -> list[str]:
    messages = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "row"
        messages.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return messages


def parse(text: str) -> ParsedFile:
    """Validate every row of a customer CSV against the customer model.

    Raises :class:`CsvFileError` when the file as a whole is unusable (not CSV, unknown or
    missing columns); a bad row becomes a :class:`RowError` with its line number.
    """
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise CsvFileError("the file is empty: expected a header row naming the columns")
    names = _header(first[1])
    if "customer_name" not in names:
        raise CsvFileError("the required column customer_name is missing")
    parsed = ParsedFile()
    for line, cells in records:
        extra = cells[len(names) :]
        if any(cell.strip() for cell in extra):
            parsed.invalid.append(
                RowError(line, [f"has {len(cells)} values but the header has {len(names)}"])
            )
            continue
        row = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(names)}
        if _is_example(row):
            parsed.invalid.append(
                RowError(
                    line,
                    ["this is the template's example row (John Doe): remove it before importing"],
                )
            )
            continue
        data, errors = _to_data(row)
        try:
            customer = CustomerIn.model_validate(data)
        except ValidationError as error:
            errors.extend(_model_errors(error))
        if errors:
            parsed.invalid.append(RowError(line, errors))
        else:
            parsed.rows.append(ParsedRow(line, customer))
    return parsed


def _first_lines(rows: list[ParsedRow], key: str) -> dict[str, int]:
    seen: dict[str, int] = {}
    for row in rows:
        value = getattr(row.customer, key)
        if value:
            seen.setdefault(str(value), row.line)
    return seen


def check_against_store(session: Session, organisation_id: str, parsed: ParsedFile) -> ParsedFile:
    """The rules a row can only break given the store and the rest of the file:
    duplicates within the file, an unknown ``business_entity_id`` or a change of one, and
    an ``email`` that belongs to another customer. A few queries for the whole file."""
    rows = parsed.rows
    by_external = repository.find_customers_by_external_ids(
        session, organisation_id, [r.customer.external_id for r in rows if r.customer.external_id]
    )
    by_email = repository.find_customers_by_emails(
        session, organisation_id, [r.customer.email for r in rows if r.customer.email]
    )
    entities = repository.business_entity_ids(
        session,
        organisation_id,
        [str(r.customer.business_entity_id) for r in rows if r.customer.business_entity_id],
    )
    first_external = _first_lines(rows, "external_id")
    first_email = _first_lines(rows, "email")
    checked = ParsedFile(invalid=list(parsed.invalid))
    for row in rows:
        customer = row.customer
        target = by_external.get(customer.external_id) if customer.external_id else None
        owner = by_email.get(customer.email) if customer.email else None
        errors = [
            *_repeated(row, first_external, first_email),
            *_entity_errors(customer, target, entities),
            *_email_owner_errors(customer, target, owner),
        ]
        if errors:
            checked.invalid.append(RowError(row.line, errors))
        else:
            checked.rows.append(row)
    checked.invalid.sort(key=lambda e: e.line)
    return checked


def _repeated(
    row: ParsedRow, first_external: Mapping[str, int], first_email: Mapping[str, int]
) -> list[str]:
    """An external id or e-mail an earlier line of the file has."""
    customer, errors = row.customer, []
    if customer.external_id and first_external[customer.external_id] != row.line:
        errors.append(
            f"external_id: {customer.external_id!r} is also on line "
            f"{first_external[customer.external_id]}"
        )
    if customer.email and first_email[customer.email] != row.line:
        errors.append(f"email: {customer.email!r} is also on line {first_email[customer.email]}")
    return errors


def _entity_errors(
    customer: CustomerIn, target: CustomerRow | None, entities: Collection[str]
) -> list[str]:
    """A business entity the organisation lacks, or a change of the customer's."""
    entity = str(customer.business_entity_id) if customer.business_entity_id else None
    errors = []
    if entity and entity not in entities:
        errors.append(f"business_entity_id: {entity} is not a business entity of this organisation")
    if target and entity and target.business_entity_id not in (None, entity):
        errors.append(
            f"business_entity_id: customer {target.external_id} has "
            f"{target.business_entity_id}; it cannot be changed once set"
        )
    return errors


def _email_owner_errors(
    customer: CustomerIn, target: CustomerRow | None, owner: CustomerRow | None
) -> list[str]:
    """An e-mail another customer has, or a row that would clear the external id of the
    customer it matches by e-mail."""
    errors = []
    if owner is not None and customer.external_id and (target is None or owner.id != target.id):
        errors.append(
            f"email: {customer.email!r} already belongs to customer {owner.id}"
            + (f" (external_id {owner.external_id})" if owner.external_id else "")
        )
    if owner is not None and not customer.external_id and owner.external_id:
        # Matched by email, the row would clear that customer's external ID.
        errors.append(
            f"external_id: empty, but the customer with this email has external_id "
            f"{owner.external_id!r}; put it in the row"
        )
    return errors


def import_csv(
    session: Session, organisation_id: str, text: str, *, skip_invalid: bool = False
) -> ImportReport:
    """Validate every row of ``text`` then import the customers in one bulk call.

    With bad rows, nothing is imported unless ``skip_invalid``. Raises :class:`CsvFileError`
    when the file itself is unusable. The caller owns the transaction.
    """
    parsed = check_against_store(session, organisation_id, parse(text))
    if parsed.invalid and not skip_invalid:
        return ImportReport(imported=False, invalid=parsed.invalid)
    summary = import_customers(session, organisation_id, [row.customer for row in parsed.rows])
    return ImportReport(
        imported=True,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        invalid=parsed.invalid,
    )


# --- secondary contacts --------------------------------------------------------------------
#
# A file of its own (``crmsync customers import-contacts``), one contact per row:
#
# - ``customer_external_id`` or ``customer_id`` (either column, or both): the contact's
#   customer, by its external ID or its billing id; a row with both names one customer;
# - ``name`` (required), ``email`` (required: a contact is matched by e-mail within its
#   customer, so importing the file again updates the same contacts);
# - ``communications`` (optional): ``billing``, ``updates``, ``legal`` separated by ``;``
#   (or ``,``); ``none`` for none. An empty cell or no such column: a new contact gets
#   ``billing``, an existing one keeps its own.
#
# Every row is checked (the contact model, the customer exists, no e-mail twice for one
# customer in the file) before anything is written; a file with a bad row imports nothing.
# Added and changed contacts are pending, so the next sync of each connection that links
# the customer pushes them, as contacts added with the API are.

CONTACT_COLUMNS = ("customer_external_id", "customer_id", "name", "email", "communications")
_CONTACTS_TEMPLATE = "crmsync customers import-contacts --help"


@dataclass(frozen=True)
class ContactRowIn:
    line: int
    customer_id: str | None
    customer_external_id: str | None
    name: str
    email: str
    communications: list[str] | None


def _communications(value: str) -> list[str] | None:
    if not value:
        return None
    if value.strip().lower() == "none":
        return []
    return [part.strip() for part in value.replace(",", ";").split(";") if part.strip()]


def parse_contacts(text: str) -> tuple[list[ContactRowIn], list[RowError]]:
    """Validate every row of a contacts CSV by the contact model; bad rows with their line.
    Raises :class:`CsvFileError` when the file as a whole is unusable."""
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise CsvFileError("the file is empty: expected a header row naming the columns")
    names = _contacts_header(first[1])
    rows: list[ContactRowIn] = []
    invalid: list[RowError] = []
    for line, cells in records:
        if any(cell.strip() for cell in cells[len(names) :]):
            invalid.append(
                RowError(line, [f"has {len(cells)} values but the header has {len(names)}"])
            )
            continue
        row = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(names)}
        parsed = _contact_row(line, row)
        if isinstance(parsed, RowError):
            invalid.append(parsed)
        else:
            rows.append(parsed)
    return rows, invalid


def _contacts_header(header: list[str]) -> list[str]:
    """The columns a contacts file names; :class:`CsvFileError` without those it needs."""
    names = _header(header, CONTACT_COLUMNS, _CONTACTS_TEMPLATE)
    missing = [n for n in ("name", "email") if n not in names]
    if missing:
        raise CsvFileError(f"the required column(s) {', '.join(missing)} are missing")
    if "customer_id" not in names and "customer_external_id" not in names:
        raise CsvFileError("a column customer_external_id or customer_id is required")
    return names


def _contact_row(line: int, row: Mapping[str, str]) -> ContactRowIn | RowError:
    """One row of a contacts file, checked by the contact model."""
    errors: list[str] = []
    customer_id = row.get("customer_id") or None
    external_id = row.get("customer_external_id") or None
    if customer_id is None and external_id is None:
        errors.append("customer: give customer_external_id or customer_id")
    if customer_id is not None:
        try:
            customer_id = str(uuid.UUID(customer_id))
        except ValueError:
            errors.append(f"customer_id: {customer_id!r} is not a customer id (a UUID)")
    if not row["email"]:
        errors.append("email: required (a contact is matched by e-mail within its customer)")
    fields: dict[str, Any] = {"name": row["name"], "email": row["email"] or None}
    communications = _communications(row.get("communications", ""))
    if communications is not None:
        fields["communications"] = communications
    try:
        contact = Contact.model_validate(fields)
    except ValidationError as error:
        errors.extend(_model_errors(error))
    if errors:
        return RowError(line, errors)
    return ContactRowIn(
        line,
        customer_id,
        external_id,
        contact.name,
        str(contact.email),
        list(contact.communications) if communications is not None else None,
    )


def import_contacts_csv(session: Session, organisation_id: str, text: str) -> ImportReport:
    """Validate every row of a contacts CSV, against the model and the store, then add or
    change the contacts (matched by e-mail within their customer). With a bad row, nothing
    is written. The caller owns the transaction."""
    rows, invalid = parse_contacts(text)
    owners, unowned = _contact_owners(session, organisation_id, rows)
    invalid += unowned
    if invalid:
        invalid.sort(key=lambda e: e.line)
        return ImportReport(imported=False, invalid=invalid)
    existing = {
        (c.customer_id, c.email.casefold()): c
        for c in contact_repository.contacts_of_customers(
            session, organisation_id, list(set(owners.values()))
        )
        if c.email
    }
    report = ImportReport(imported=True)
    for row in rows:
        customer_id = owners[row.line]
        found = existing.get((customer_id, row.email.casefold()))
        values: dict[str, Any] = {"name": row.name, "email": row.email}
        if row.communications is not None:
            values["communications"] = row.communications
        if found is None:
            data = Contact.model_validate(values)
            session.add(contacts.new_contact(organisation_id, customer_id, data))
            report.created += 1
        elif contacts.patched(found, ContactPatch.model_validate(values)):
            report.updated += 1
        else:
            report.unchanged += 1
    session.flush()
    return report


def _contact_owners(
    session: Session, organisation_id: str, rows: Sequence[ContactRowIn]
) -> tuple[dict[int, str], list[RowError]]:
    """Each row's customer (by line), found by id or external id, and the rows whose
    customer is not found, is named twice over, or already has the row's e-mail on an
    earlier line."""
    by_id = repository.get_customers(
        session, organisation_id, [r.customer_id for r in rows if r.customer_id]
    )
    by_external = repository.find_customers_by_external_ids(
        session, organisation_id, [r.customer_external_id for r in rows if r.customer_external_id]
    )
    owners: dict[int, str] = {}
    invalid: list[RowError] = []
    first_line: dict[tuple[str, str], int] = {}
    for row in rows:
        named = by_id.get(row.customer_id) if row.customer_id else None
        external = by_external.get(row.customer_external_id) if row.customer_external_id else None
        errors = _owner_errors(row, named, external)
        owner = named or external
        if owner is not None and not errors:
            seen = first_line.setdefault((owner.id, row.email.casefold()), row.line)
            if seen != row.line:
                errors.append(f"email: {row.email!r} is also on line {seen} for this customer")
        if errors:
            invalid.append(RowError(row.line, errors))
        elif owner is not None:
            owners[row.line] = owner.id
    return owners, invalid


def _owner_errors(
    row: ContactRowIn, named: CustomerRow | None, external: CustomerRow | None
) -> list[str]:
    """What is wrong with how the row names its customer."""
    errors = []
    if row.customer_id and named is None:
        errors.append(f"customer_id: no customer {row.customer_id} in this organisation")
    if row.customer_external_id and external is None:
        errors.append(
            f"customer_external_id: no customer with external_id "
            f"{row.customer_external_id!r} in this organisation"
        )
    if named is not None and external is not None and named.id != external.id:
        errors.append(
            f"customer_id and customer_external_id name two customers ({named.id}, {external.id})"
        )
    return errors
