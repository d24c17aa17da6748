"""``crmsync customers add-contact`` and ``set-contact``, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

from cli.output import ExitCode
from tests.cli.conftest import Run, as_json


def _customer(run: Run, org: str, tmp_path: Path) -> str:
    csv = tmp_path / "one.csv"
    csv.write_text("customer_name,external_id\nAcme,A-1\n", encoding="utf-8")
    run("customers", "import", str(csv), "--org", org)
    (customer,) = as_json(run("customers", "list", "--org", org, "--json"))
    return str(customer["id"])


def test_add_and_change_a_contact(run: Run, org: str, tmp_path: Path) -> None:
    customer = _customer(run, org, tmp_path)
    added = as_json(
        run(
            "customers",
            "add-contact",
            customer,
            "--org",
            org,
            "--name",
            "Ann Lee",
            "--email",
            "ann@example.com",
            "--communications",
            "billing,legal",
            "--json",
        )
    )
    assert (added["name"], added["communications"], added["pending"]) == (
        "Ann Lee",
        ["billing", "legal"],
        True,
    )
    said = run("customers", "set-contact", customer, added["id"], "--org", org, "--no-email")
    assert "Changed contact" in said.stdout
    shown = run("customers", "show", customer, "--org", org).stdout
    assert "Ann Lee" in shown and "ann@example.com" not in shown
    # bad input is exit 4, an unknown customer or contact exit 3, nothing changed
    bad = run(
        "customers",
        "add-contact",
        customer,
        "--org",
        org,
        "--name",
        "B",
        "--email",
        "x",
        code=ExitCode.INVALID,
    )
    assert "email" in bad.stderr
    twice = ["--name", "C", "--email", "c@example.com"]
    run("customers", "add-contact", customer, "--org", org, *twice)
    run("customers", "add-contact", customer, "--org", org, *twice, code=ExitCode.INVALID)
    run(
        "customers",
        "add-contact",
        str(uuid.uuid4()),
        "--org",
        org,
        "--name",
        "D",
        code=ExitCode.NOT_FOUND,
    )
    run(
        "customers",
        "set-contact",
        customer,
        str(uuid.uuid4()),
        "--org",
        org,
        "--name",
        "E",
        code=ExitCode.NOT_FOUND,
    )
    run("customers", "set-contact", customer, added["id"], "--org", org, code=ExitCode.ERROR)
