"""``crmsync customers sample-csv`` and ``import``, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cli.output import ExitCode
from sync import csv_import
from tests.cli.conftest import Run, as_json

HEADER = "customer_name,external_id,email,address.city,address.country_code,custom_data"


def write(path: Path, *lines: str, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def count(run: Run, org: str) -> int:
    return len(as_json(run("customers", "list", "--org", org, "--json")))


def test_sample_csv_is_every_column_and_one_john_doe_row(run: Run, tmp_path: Path) -> None:
    rows = list(csv.reader(io.StringIO(run("customers", "sample-csv").stdout)))
    assert rows[0] == list(csv_import.COLUMNS)
    assert len(rows) == 2
    example = dict(zip(rows[0], rows[1], strict=True))
    assert example["customer_name"] == "John Doe"
    for column in ("address.country_code", "ship_to_address.line1", "tax_info", "custom_data"):
        assert column in example
    assert json.loads(example["custom_data"]) == {"exempt_tax": False}

    target = tmp_path / "template.csv"
    run("customers", "sample-csv", str(target))
    assert target.read_text(encoding="utf-8") == csv_import.template()
    assert "--force" in run("customers", "sample-csv", str(target), code=ExitCode.ERROR).stderr
    run("customers", "sample-csv", str(target), "--force")


def test_the_untouched_example_row_is_refused(run: Run, org: str, tmp_path: Path) -> None:
    template = tmp_path / "customers.csv"
    run("customers", "sample-csv", str(template))
    result = run("customers", "import", str(template), "--org", org, code=ExitCode.INVALID)
    assert f"{template}:2:" in result.stderr
    assert "remove it" in result.stderr
    assert count(run, org) == 0
    # once the example is changed, the template's format imports as it is
    template.write_text(template.read_text().replace("John Doe", "Jane Roe"))
    report = as_json(run("customers", "import", str(template), "--org", org, "--json"))
    assert report["created"] == 1


def test_import_creates_then_is_idempotent_then_updates(run: Run, org: str, tmp_path: Path) -> None:
    file = write(
        tmp_path / "c.csv",
        HEADER,
        'Acme,A-1,billing@acme.com,Paris,FR,"{""tier"": ""gold""}"',
        "Globex,G-1,,Springfield,US,",
    )
    first = as_json(run("customers", "import", str(file), "--org", org, "--json"))
    assert first == {
        "imported": True,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "invalid": 0,
        "errors": [],
    }
    second = as_json(run("customers", "import", str(file), "--org", org, "--json"))
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 2)
    assert count(run, org) == 2
    human = run("customers", "import", str(file), "--org", org).stdout
    assert "0 created, 0 updated, 2 unchanged, 0 invalid" in human

    write(file, HEADER, "Acme Ltd,A-1,billing@acme.com,Paris,FR,", "Globex,G-1,,Springfield,US,")
    third = as_json(run("customers", "import", str(file), "--org", org, "--json"))
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 1)
    (acme,) = as_json(run("customers", "list", "--org", org, "--external-id", "A-1", "--json"))
    assert acme["customer_name"] == "Acme Ltd"
    assert acme["custom_data"] == {}
    assert acme["address"]["country_code"] == "FR"


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(
    run: Run, org: str, tmp_path: Path
) -> None:
    file = write(
        tmp_path / "bad.csv",
        HEADER,
        "Good,OK-1,good@example.com,Paris,FR,",
        "",  # blank lines are skipped but still counted
        ",NO-NAME,,,,",
        "Bad Email,BAD-1,not-an-email,,XX,",
        'Bad Json,BAD-2,,,,"{nope"',
        "Good Too,OK-2,,,,",
    )
    result = run("customers", "import", str(file), "--org", org, code=ExitCode.INVALID)
    assert f"{file}:4: customer_name: Field required" in result.stderr
    assert f"{file}:5: email:" in result.stderr
    assert f"{file}:5: address.country_code:" in result.stderr
    assert f"{file}:6: custom_data: is not valid JSON" in result.stderr
    assert "nothing imported" in result.stderr
    assert f"{file}:2" not in result.stderr
    assert count(run, org) == 0

    report = as_json(
        run("customers", "import", str(file), "--org", org, "--json", code=ExitCode.INVALID)
    )
    assert report["imported"] is False
    assert [e["line"] for e in report["errors"]] == [4, 5, 6]
    assert report["invalid"] == 3

    skipped = as_json(
        run("customers", "import", str(file), "--org", org, "--skip-invalid", "--json")
    )
    assert (skipped["created"], skipped["invalid"]) == (2, 3)
    assert sorted(
        c["external_id"] for c in as_json(run("customers", "list", "--org", org, "--json"))
    ) == ["OK-1", "OK-2"]
    human = run("customers", "import", str(file), "--org", org, "--skip-invalid")
    assert "3 invalid (skipped)" in human.stdout
    assert f"{file}:6:" in human.stderr


def test_store_rules_are_row_errors(run: Run, org: str, tmp_path: Path) -> None:
    entity = as_json(run("entities", "create", "Acme EU", "--org", org, "--json"))["id"]
    other_org = as_json(run("orgs", "create", "Other", "--json"))["id"]
    foreign = as_json(run("entities", "create", "Theirs", "--org", other_org, "--json"))["id"]
    header = "customer_name,external_id,email,business_entity_id"
    base = write(tmp_path / "base.csv", header, f"Acme,A-1,a@example.com,{entity}")
    run("customers", "import", str(base), "--org", org)
    file = write(
        tmp_path / "rules.csv",
        header,
        f"Theirs,T-1,,{foreign}",  # another organisation's entity
        "Taken,T-2,a@example.com,",  # the email of customer A-1
        "Dup,T-3,,",
        "Dup again,T-3,,",
        "No id,,a@example.com,",  # matched by email, would clear A-1's external_id
    )
    report = as_json(
        run("customers", "import", str(file), "--org", org, "--json", code=ExitCode.INVALID)
    )
    errors = {e["line"]: " ".join(e["errors"]) for e in report["errors"]}
    assert "business_entity_id" in errors[2]
    assert "not a business entity" in errors[2]
    assert "already belongs to customer" in errors[3]
    assert "also on line 4" in errors[5]
    assert "external_id" in errors[6]
    assert 4 not in errors


def test_business_entity_cannot_change_through_import(run: Run, org: str, tmp_path: Path) -> None:
    first = as_json(run("entities", "create", "EU", "--org", org, "--json"))["id"]
    second = as_json(run("entities", "create", "US", "--org", org, "--json"))["id"]
    header = "customer_name,external_id,business_entity_id"
    run(
        "customers",
        "import",
        str(write(tmp_path / "a.csv", header, f"Acme,A-1,{first}")),
        "--org",
        org,
    )
    changed = write(tmp_path / "b.csv", header, f"Acme,A-1,{second}")
    result = run("customers", "import", str(changed), "--org", org, code=ExitCode.INVALID)
    assert "cannot be changed once set" in result.stderr


def test_file_level_errors(run: Run, org: str, tmp_path: Path) -> None:
    cases = {
        "unknown.csv": ("customer_name,colour,emial\nAcme,red,x\n", "unknown columns: colour"),
        "noname.csv": ("external_id\nA-1\n", "customer_name is missing"),
        "empty.csv": ("", "empty"),
        "dupes.csv": ("customer_name,customer_name\nA,B\n", "duplicate columns"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        result = run("customers", "import", str(path), "--org", org, code=ExitCode.INVALID)
        assert message in result.stderr, (name, result.stderr)
    assert (
        "did you mean email?"
        in run(
            "customers",
            "import",
            str(tmp_path / "unknown.csv"),
            "--org",
            org,
            code=ExitCode.INVALID,
        ).stderr
    )
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    result = run("customers", "import", str(binary), "--org", org, code=ExitCode.INVALID)
    assert "not a UTF-8 text file" in result.stderr
    missing = run(
        "customers", "import", str(tmp_path / "nope.csv"), "--org", org, code=ExitCode.USAGE
    )
    assert "Invalid value" in missing.stderr
    assert count(run, org) == 0


def test_bom_and_spreadsheet_quirks(run: Run, org: str, tmp_path: Path) -> None:
    file = write(
        tmp_path / "excel.csv",
        "customer_name,external_id,communications_enabled,tax_info,",  # trailing empty column
        'Acme,A-1,FALSE,"[{""jurisdiction"": ""EU"", ""tax_type"": ""VAT"", ""value"": ""DE1""}]",',
        "Short,S-1",  # missing trailing cells are empty
        ",,,,",  # an empty row is a blank line
        bom=True,
    )
    report = as_json(run("customers", "import", str(file), "--org", org, "--json"))
    assert (report["created"], report["invalid"]) == (2, 0)
    (acme,) = as_json(run("customers", "list", "--org", org, "--external-id", "A-1", "--json"))
    assert acme["communications_enabled"] is False
    assert acme["tax_info"] == [{"jurisdiction": "EU", "tax_type": "VAT", "value": "DE1"}]
    bad_bool = write(tmp_path / "bool.csv", "customer_name,auto_charge_enabled", "Acme,yes")
    result = run("customers", "import", str(bad_bool), "--org", org, code=ExitCode.INVALID)
    assert "auto_charge_enabled: must be true or false" in result.stderr
