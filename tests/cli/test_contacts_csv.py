"""``crmsync customers import-contacts``, on SQLite and PostgreSQL: bad rows are reported
with their line numbers and nothing is written; importing the same file again changes
nothing; a changed row updates its contact (matched by e-mail within the customer); the
imported contacts reach the CRM (the HubSpot sandbox) on the next sync."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.output import ExitCode
from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from tests.cli.conftest import Run, as_json


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _contacts(run: Run, org: str, customer_id: str) -> dict[str, dict[str, object]]:
    shown = as_json(run("customers", "show", customer_id, "--org", org, "--json"))
    return {str(c["email"]): c for c in shown["contacts"]}


def test_import_contacts_checks_every_row_then_is_idempotent(
    run: Run, org: str, tmp_path: Path
) -> None:
    customers = _write(tmp_path / "c.csv", "customer_name,external_id", "Acme,A-1", "Globex,G-1")
    run("customers", "import", str(customers), "--org", org)
    by_external = {
        c["external_id"]: c["id"] for c in as_json(run("customers", "list", "--org", org, "--json"))
    }
    header = "customer_external_id,customer_id,name,email,communications"
    bad = _write(
        tmp_path / "bad.csv",
        header,
        "A-1,,Ann Lee,ann@acme.com,billing;legal",
        "NOPE,,Bo Park,bo@acme.com,",
        f"G-1,{by_external['A-1']},Cy Moss,cy@globex.com,",
        "A-1,,Di Ray,not-an-email,spam",
        "A-1,,,dee@acme.com,",
        "A-1,,Ann Again,ANN@acme.com,",
        "G-1,,No Mail,,",
    )
    result = run("customers", "import-contacts", str(bad), "--org", org, code=ExitCode.INVALID)
    said = result.stderr
    assert f"{bad}:3: customer_external_id: no customer with external_id 'NOPE'" in said
    assert f"{bad}:4: customer_id and customer_external_id name two customers" in said
    assert f"{bad}:5: email:" in said and f"{bad}:5: communications.0:" in said
    assert f"{bad}:6: name:" in said
    assert f"{bad}:7: email: 'ANN@acme.com' is also on line 2" in said
    assert f"{bad}:8: email: required" in said
    assert f"{bad}:2:" not in said
    assert "nothing imported" in said
    assert _contacts(run, org, by_external["A-1"]) == {}  # nothing half-written

    good = _write(
        tmp_path / "good.csv",
        header,
        "A-1,,Ann Lee,ann@acme.com,billing;legal",
        f",{by_external['G-1']},Cy  Moss,cy@globex.com,",
        "G-1,,Cy Moss,cy@acme.com,none",
    )
    first = as_json(run("customers", "import-contacts", str(good), "--org", org, "--json"))
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    acme = _contacts(run, org, by_external["A-1"])
    assert acme["ann@acme.com"]["communications"] == ["billing", "legal"]
    globex = _contacts(run, org, by_external["G-1"])
    assert globex["cy@globex.com"]["name"] == "Cy Moss"
    assert globex["cy@globex.com"]["communications"] == ["billing"]  # the default
    assert globex["cy@acme.com"]["communications"] == []
    again = run("customers", "import-contacts", str(good), "--org", org).stdout
    assert "0 contact(s) added, 0 changed, 3 unchanged" in " ".join(again.split())
    # a changed row updates its contact, matched by e-mail (in any case); an empty
    # communications cell keeps the contact's own
    _write(good, "customer_external_id,name,email,communications", "A-1,Ann Lee-Park,ANN@acme.com,")
    third = as_json(run("customers", "import-contacts", str(good), "--org", org, "--json"))
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 0)
    (ann,) = _contacts(run, org, by_external["A-1"]).values()
    assert (ann["name"], ann["communications"]) == ("Ann Lee-Park", ["billing", "legal"])


def test_a_file_without_the_required_columns_is_refused(run: Run, org: str, tmp_path: Path) -> None:
    file = _write(tmp_path / "x.csv", "name,email", "Ann,ann@acme.com")
    said = run("customers", "import-contacts", str(file), "--org", org, code=ExitCode.INVALID)
    assert "customer_external_id or customer_id" in said.stderr
    file = _write(tmp_path / "y.csv", "customer_external_id,name,mail", "A-1,Ann,ann@acme.com")
    said = run("customers", "import-contacts", str(file), "--org", org, code=ExitCode.INVALID)
    assert "mail (did you mean email?)" in said.stderr


def test_imported_contacts_are_pushed_on_the_next_sync(
    run: Run, org: str, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.hubspot.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    company = sandbox.hubspot.create("companies", {"name": "Initech", "domain": "initech.example"})
    run(
        "connections", "add", "hubspot", "hs", "--org", org, "--host", sandbox.hubspot_url,
        "--access-token", "pat-token", "--client-secret", "hs-secret",
    )  # fmt: skip
    assert as_json(run("sync", "hs", "--org", org, "--wait", "--json"))["status"] == "succeeded"
    (customer,) = as_json(run("customers", "list", "--org", org, "--json"))
    file = _write(
        tmp_path / "contacts.csv",
        "customer_id,name,email",
        f"{customer['id']},Pat Quinn,pat@initech.example",
    )
    run("customers", "import-contacts", str(file), "--org", org)
    ran = as_json(run("sync", "hs", "--org", org, "--wait", "--json"))
    assert ran["status"] == "succeeded"
    in_crm = [
        sandbox.hubspot.read(i, "contacts")
        for i in sandbox.hubspot.ids("contacts")
        if company in sandbox.hubspot.read(i, "contacts")["associations"]
    ]
    assert [c["properties"]["email"] for c in in_crm] == ["pat@initech.example"]
    (pushed,) = _contacts(run, org, customer["id"]).values()
    assert pushed["crm_id"] == in_crm[0]["id"]
