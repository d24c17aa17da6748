"""Why a conflict is a conflict: how the explanation names the difference and the cause."""

from __future__ import annotations

import pytest

from sync.explain import ConflictFacts, difference, explain_conflict


@pytest.mark.parametrize(
    ("billing", "crm", "field", "phrase"),
    [
        ("ACME Ltd", "Acme Ltd", "customer_name", "only in letter case"),
        ("Acme  Ltd", "Acme Ltd", "customer_name", "only in inner white space"),
        ("ACME  Ltd", "Acme Ltd", "customer_name", "only in letter case and white space"),
        ("Germany", "DE", "address.country", "only in how they name the country (DE)"),
        ("", "Berlin", "address.city", "in that one side is empty"),
        ("Suite 100", "Ste 100", "address.line2", "as different text"),
        (
            "Main Street 1",
            "Main Street 12",
            "address.line1",
            "from character 14 on ('' against '2')",
        ),
    ],
)
def test_the_difference_is_named(billing: str, crm: str, field: str, phrase: str) -> None:
    assert difference(billing, crm, field) == phrase


def test_a_first_link_mismatch_says_the_match_rule_and_whether_normalized_accepts_it() -> None:
    lines = explain_conflict(
        ConflictFacts("field", "customer_name", None, "ACME Ltd", "Acme Ltd", "exact")
    )
    assert "first linked" in lines[0] and "match rule" in lines[0]
    assert lines[1] == "The two values differ only in letter case."
    assert "normalized rule (a connection setting) would accept them" in lines[2]
    different = explain_conflict(
        ConflictFacts("field", "address.city", None, "Springfield", "Mumbai", "exact")
    )
    assert "under the normalized rule too" in different[2]


def test_both_sides_changed_names_the_base_and_each_side() -> None:
    lines = explain_conflict(
        ConflictFacts("field", "phone_number", "+1 555 0100", "+1 555 0101", "+1 555 0102", "exact")
    )
    assert lines[0].startswith("Both sides changed phone_number since the last sync")
    assert "'+1 555 0100'" in lines[0] and "billing to '+1 555 0101'" in lines[0]
    assert len(lines) == 2  # the match rule does not cover the phone number


def test_an_email_held_by_another_customer_and_a_merge_are_explained() -> None:
    held = explain_conflict(
        ConflictFacts("field", "email", "a@x.example", "a@x.example", "b@x.example", "exact", "C-2")
    )
    assert "already belongs to another customer (C-2)" in held[0]
    merge = explain_conflict(ConflictFacts("merge", "customer", "001A", "C-1", "C-2", "exact"))
    assert "never merges billing customers" in merge[1]
