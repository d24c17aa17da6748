"""``crmsync customers``: list, show and import an organisation's customers; the CSV template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import IntegrityError

from cli.db import session
from cli.orgs import require_organisation
from cli.output import (
    ExitCode,
    JsonOption,
    OrgOption,
    fail,
    print_json,
    print_record,
    print_table,
    say,
    stderr,
)
from sync import contacts as contact_book
from sync import csv_import, customers
from sync.contacts import ContactOut, ContactPatch
from sync.customer import Contact, flatten

app = typer.Typer(name="customers", help="An organisation's billing customers; CSV import.")


@app.command("list")
def list_(
    org: OrgOption,
    external_id: str | None = typer.Option(None, help="Only the customer with this external ID."),
    limit: int = typer.Option(100, min=1, max=10_000, help="At most this many customers."),
    # SQL's OFFSET is a signed 64-bit integer: a larger one is a usage error, not a crash
    offset: int = typer.Option(0, min=0, max=2**63 - 1, help="Skip this many customers first."),
    as_json: JsonOption = False,
) -> None:
    """List the organisation's customers, oldest first."""
    with session() as opened:
        require_organisation(opened, org)
        found = customers.list_customers(
            opened, org.strip(), external_id=external_id, limit=limit, offset=offset
        )
    data = [c.model_dump(mode="json") for c in found]
    if as_json:
        print_json(data)
        return
    print_table(
        ["id", "external_id", "customer_name", "email", "country"],
        [(c["id"], c["external_id"], c["customer_name"], c["email"], _country(c)) for c in data],
        title="Customers",
    )


def _country(customer: dict[str, Any]) -> str | None:
    address = customer.get("address") or {}
    code: str | None = address.get("country_code")
    return code


@app.command()
def show(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.", show_default=False)],
    org: OrgOption,
    as_json: JsonOption = False,
) -> None:
    """Show one customer of the organisation."""
    with session() as opened:
        require_organisation(opened, org)
        found = customers.get_customer(opened, org.strip(), customer_id)
        contacts = customers.contacts_of(opened, org.strip(), str(found.id))
        links = customers.links_of(opened, org.strip(), str(found.id))
    data = found.model_dump(mode="json")
    if as_json:
        # the customer's public shape, plus what the table shows: its links and contacts
        print_json({**data, "links": links, "contacts": contacts})
        return
    record: dict[str, Any] = {"id": data["id"]}
    record.update((k, v) for k, v in flatten(data).items() if not k.startswith("custom_data."))
    record["tax_info"] = ", ".join(
        f"{t.jurisdiction} {t.tax_type} {t.value}" for t in found.tax_info
    )
    record["custom_data"] = json.dumps(data["custom_data"]) if data["custom_data"] else None
    for key in ("communications_enabled", "auto_charge_enabled", "business_entity_id"):
        record[key] = data[key]
    print_record({k: v for k, v in record.items() if v not in (None, "")}, title="Customer")
    if links:
        print_table(
            ["connection", "CRM record", "state"],
            [[link["connection"], link["crm_id"], link["state"]] for link in links],
            title="Linked CRM records",
        )
    if contacts:
        print_table(
            ["name", "email", "communications", "from CRM record"],
            [
                [c["name"], c["email"], ", ".join(c["communications"]), c["crm_id"]]
                for c in contacts
            ],
            title="Contacts",
        )


def _contact_fields(
    name: str | None, email: str | None, no_email: bool, communications: str | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if no_email:
        fields["email"] = None
    elif email is not None:
        fields["email"] = email
    if communications is not None:
        fields["communications"] = [c.strip() for c in communications.split(",") if c.strip()]
    return fields


def _show_contact(contact: ContactOut, as_json: bool, verb: str) -> None:
    data = contact.model_dump(mode="json")
    if as_json:
        print_json(data)
        return
    say(
        f"{verb} contact {data['id']} ({data['name']}) of customer {data['customer_id']}: "
        "pushed to each linked CRM on its next sync."
    )


@app.command("add-contact")
def add_contact(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.", show_default=False)],
    org: OrgOption,
    name: str = typer.Option(..., "--name", help="The contact's name."),
    email: str | None = typer.Option(None, "--email", help="The contact's e-mail address."),
    communications: str | None = typer.Option(
        None,
        "--communications",
        help="Comma-separated: billing, updates, legal (default: billing).",
    ),
    as_json: JsonOption = False,
) -> None:
    """Add a secondary contact to a customer (pushed to its linked CRMs on the next sync).
    Exit 3 for an unknown customer, 4 for bad input or an e-mail the customer has already."""
    body = contact_book.checked(Contact, _contact_fields(name, email, False, communications))
    with session() as opened:
        require_organisation(opened, org)
        added = contact_book.add_contact(opened, org.strip(), customer_id, body)
    _show_contact(added, as_json, "Added")


@app.command("set-contact")
def set_contact(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.", show_default=False)],
    contact_id: Annotated[str, typer.Argument(help="The contact's id.", show_default=False)],
    org: OrgOption,
    name: str | None = typer.Option(None, "--name", help="A new name."),
    email: str | None = typer.Option(None, "--email", help="A new e-mail address."),
    no_email: bool = typer.Option(False, "--no-email", help="Clear the e-mail address."),
    communications: str | None = typer.Option(
        None, "--communications", help="Comma-separated: billing, updates, legal."
    ),
    as_json: JsonOption = False,
) -> None:
    """Change a customer's contact: only the options given change. Exit 3 for an unknown
    customer or contact, 4 for bad input."""
    fields = _contact_fields(name, email, no_email, communications)
    if not fields:
        fail("nothing to change: give --name, --email, --no-email or --communications")
    patch = contact_book.checked(ContactPatch, fields)
    with session() as opened:
        require_organisation(opened, org)
        changed = contact_book.change_contact(opened, org.strip(), customer_id, contact_id, patch)
    _show_contact(changed, as_json, "Changed")


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="The CSV file (see sample-csv)."
        ),
    ],
    org: OrgOption,
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Import the good rows even if some rows are bad."
    ),
    as_json: JsonOption = False,
) -> None:
    """Import customers from a CSV file, matched by external_id (importing twice is a no-op).

    Every row is checked first; each bad row is reported with its line number, and nothing
    is imported from a file with bad rows unless --skip-invalid. Exit 4 when rows are bad.
    """
    try:
        text = csv_import.read_text(file)
        with session() as opened:
            require_organisation(opened, org)
            report = csv_import.import_csv(opened, org.strip(), text, skip_invalid=skip_invalid)
    except IntegrityError as error:
        fail(f"{file}: the store refused the import: {error.orig or error}", ExitCode.INVALID)
    code = ExitCode.INVALID if report.invalid and not skip_invalid else ExitCode.OK
    _print_bad_rows(file, report, code, as_json)
    if not report.imported:
        fail(
            f"{len(report.invalid)} bad row(s): nothing imported; fix them, "
            "or pass --skip-invalid to import the other rows",
            ExitCode.INVALID,
        )
    say(
        f"Imported {file.name}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.invalid)} invalid"
        + (" (skipped)" if report.invalid else "")
        + "."
    )


def _print_bad_rows(
    file: Path,
    report: csv_import.ImportReport,
    code: ExitCode,
    as_json: bool,
) -> None:
    """An import's report as JSON (then exit with ``code``), or its bad rows by line."""
    if as_json:
        print_json(report.as_dict())
        raise typer.Exit(int(code))
    errors = stderr()
    for bad in report.invalid:
        for message in bad.errors:
            errors.print(f"{file}:{bad.line}: {message}", markup=False)


@app.command("import-contacts")
def import_contacts(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="The contacts CSV file."),
    ],
    org: OrgOption,
    as_json: JsonOption = False,
) -> None:
    """Add or change customers' secondary contacts from a CSV file; each is pushed to the
    customer's linked CRMs on their next sync.

    Columns (a header row, then one contact per row): customer_external_id or customer_id
    (the customer), name, email (both required), communications (optional: billing;updates;
    legal, or none). A contact is matched by e-mail within its customer, so importing the
    same file again changes nothing. Every row is checked first; each bad row is reported
    with its line number, and nothing is imported from a file with bad rows (exit 4).
    """
    text = csv_import.read_text(file)
    with session() as opened:
        require_organisation(opened, org)
        report = csv_import.import_contacts_csv(opened, org.strip(), text)
    _print_bad_rows(file, report, ExitCode.INVALID if report.invalid else ExitCode.OK, as_json)
    if not report.imported:
        fail(f"{len(report.invalid)} bad row(s): nothing imported; fix them", ExitCode.INVALID)
    say(
        f"Imported {file.name}: {report.created} contact(s) added, {report.updated} changed, "
        f"{report.unchanged} unchanged; pushed to the linked CRMs on their next sync."
    )


@app.command("sample-csv")
def sample_csv(
    output: Path | None = typer.Argument(
        None, dir_okay=False, help="Where to write the template (default: standard output)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Write the CSV template: every column and one example row (John Doe), which the
    import refuses until it is removed or changed."""
    text = csv_import.template()
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists() and not force:
        fail(f"{output} exists; pass --force to overwrite it", ExitCode.ERROR)
    output.write_text(text, encoding="utf-8", newline="")
    say(f"Wrote the template to {output}: remove the John Doe row, then add your customers.")
