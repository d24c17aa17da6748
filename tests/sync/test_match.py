"""The match rule's laws (hypothesis) and its report."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from sync.match import MATCH_MODES, canonical, compare, values_agree

text = st.text(max_size=40)
modes = st.sampled_from(MATCH_MODES)
fields = st.sampled_from(["customer_name", "address.line1", "address.city", "address.country"])
blank = st.text(alphabet=" \t\n\u00a0\u2003", max_size=4)


@given(text, modes, fields)
def test_reflexive(a: str, mode: str, field: str) -> None:
    assert values_agree(a, a, mode, field)  # type: ignore[arg-type]


@given(text, text, modes, fields)
def test_symmetric(a: str, b: str, mode: str, field: str) -> None:
    assert values_agree(a, b, mode, field) == values_agree(b, a, mode, field)  # type: ignore[arg-type]


@given(text, text, fields)
def test_exact_equal_implies_normalized_equal(a: str, b: str, field: str) -> None:
    if values_agree(a, b, "exact", field):
        assert values_agree(a, b, "normalized", field)


@given(text, blank, blank, modes, fields)
def test_invariant_under_surrounding_white_space(
    a: str, left: str, right: str, mode: str, field: str
) -> None:
    assert values_agree(a, left + a + right, mode, field)  # type: ignore[arg-type]


@given(text, modes, fields)
def test_invariant_under_nfc_nfd(a: str, mode: str, field: str) -> None:
    nfc, nfd = unicodedata.normalize("NFC", a), unicodedata.normalize("NFD", a)
    assert values_agree(nfc, nfd, mode, field)  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(categories=["Lu", "Ll"]), min_size=1, max_size=20))
def test_case_sensitive_in_exact_only(a: str) -> None:
    swapped = a.swapcase()
    if canonical(a) != canonical(swapped):
        assert not values_agree(a, swapped, "exact")
    assert (
        values_agree(a.upper(), a.lower(), "normalized")
        or a.upper().casefold() != a.lower().casefold()
    )


def test_examples_from_design() -> None:
    assert not values_agree("Suite 100", "Ste 100", "normalized")
    assert not values_agree("ACME", "Acme", "exact")
    assert values_agree("ACME", "Acme", "normalized")
    assert values_agree("  Acme   Corp ", "acme corp", "normalized")
    assert values_agree("Germany", "DE", "normalized", "address.country")
    assert not values_agree("Germany", "DE", "exact", "address.country")
    assert values_agree(None, "", "exact")


def test_report_names_each_differing_field_with_both_values() -> None:
    billing = {"customer_name": "Acme", "address.city": "Köln", "address.line1": "1 Main St"}
    crm = {"customer_name": "ACME", "address.city": "Köln ", "address.line1": "1 Main Street"}
    report = compare(billing, crm)
    assert not report.matches
    assert [(d.field, d.billing, d.crm) for d in report.differences] == [
        ("customer_name", "Acme", "ACME"),
        ("address.line1", "1 Main St", "1 Main Street"),
    ]
    assert compare(billing, crm, "normalized").fields() == ["address.line1"]
