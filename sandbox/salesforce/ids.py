"""Salesforce-shaped record ids: 15 case-sensitive characters plus a 3-character checksum.

The sandbox makes ids from a key prefix (``001`` Account, ``003`` Contact, ``00D``
organisation, ``01g`` query locator, ``04l`` outbound notification), a fixed pod part and a
counter in base 62. The alphabet is in ASCII order, so ids of one prefix sort (as plain
strings) in the order they were made, which keeps ``ORDER BY Id`` cheap and stable.
"""

from __future__ import annotations

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def checksum(id15: str) -> str:
    """The 3-character suffix Salesforce adds to a 15-character id (case-insensitive form)."""
    out = []
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = 0
        for i, ch in enumerate(chunk):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def to18(value: str) -> str:
    """An 18-character id from a 15- or 18-character one (other strings unchanged)."""
    if len(value) == 15:
        return value + checksum(value)
    return value


def make_id(prefix: str, number: int, pod: str = "5g0") -> str:
    """The ``number``-th id for ``prefix`` (3 chars) on ``pod`` (3 chars): 18 characters."""
    digits = []
    n = number
    for _ in range(9):
        n, rem = divmod(n, 62)
        digits.append(_ALPHABET[rem])
    if n:
        raise ValueError("id counter overflow")
    id15 = prefix + pod + "".join(reversed(digits))
    return id15 + checksum(id15)


def looks_like_id(value: str) -> bool:
    """True for a 15- or 18-character alphanumeric string (the shape Salesforce accepts)."""
    return len(value) in (15, 18) and value.isascii() and value.isalnum()
