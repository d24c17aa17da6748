"""The fast e-mail check agrees with email-validator (what pydantic's EmailStr runs)."""

from __future__ import annotations

import email_validator
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.customer import _email

local = st.text(alphabet="abcXYZ019._%+-!#'", min_size=1, max_size=12)
label = st.text(alphabet="abcz09-", min_size=1, max_size=8)
tld = st.sampled_from(["com", "de", "example", "test", "local", "c", "io", "COM"])


@settings(max_examples=500)
@given(local, st.lists(label, min_size=1, max_size=3), tld)
def test_fast_path_agrees_with_email_validator(user: str, labels: list[str], top: str) -> None:
    address = f"{user}@{'.'.join(labels)}.{top}"
    try:
        expected: str | None = email_validator.validate_email(
            address, check_deliverability=False
        ).normalized
    except email_validator.EmailNotValidError:
        expected = None
    try:
        got: str | None = _email(address)
    except ValueError:
        got = None
    assert got == expected
