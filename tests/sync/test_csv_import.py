"""The CSV format itself (no store): the template parses, line numbers are the file's."""

from __future__ import annotations

import pytest

from sync import csv_import


def test_the_template_parses_once_the_example_is_changed() -> None:
    parsed = csv_import.parse(csv_import.template())
    assert parsed.rows == []
    assert "remove it" in parsed.invalid[0].errors[0]
    changed = csv_import.parse(csv_import.template().replace("John Doe", "Jane Roe"))
    (row,) = changed.rows
    customer = row.customer
    assert customer.address is not None
    assert customer.address.country_code == "US"
    assert customer.ship_to_address is not None
    assert customer.tax_info[0].jurisdiction == "USA"
    assert customer.custom_data == {"exempt_tax": False}


def test_line_numbers_count_physical_lines() -> None:
    text = (
        "customer_name,address.line1\n"
        '"Multi","1 Main St\nFloor 2"\n'  # one record over lines 2-3
        "\n"
        "   ,x\n"  # line 5: blank name
    )
    parsed = csv_import.parse(text)
    assert [r.line for r in parsed.rows] == [2]
    assert parsed.rows[0].customer.address is not None
    assert parsed.rows[0].customer.address.line1 == "1 Main St\nFloor 2"
    assert [(e.line, e.errors) for e in parsed.invalid] == [(5, ["customer_name: Field required"])]


def test_extra_cells_are_a_row_error() -> None:
    parsed = csv_import.parse("customer_name\nAcme,surplus\nFine,\n")
    assert [e.line for e in parsed.invalid] == [2]
    assert "has 2 values but the header has 1" in parsed.invalid[0].errors[0]
    assert [r.customer.customer_name for r in parsed.rows] == ["Fine"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ('customer_name\n"unterminated\n', "not valid CSV"),
        ("customer_name,,email\n", "column 2 of the header has no name"),
    ],
)
def test_unusable_files(text: str, message: str) -> None:
    with pytest.raises(csv_import.CsvFileError, match=message):
        csv_import.parse(text)
