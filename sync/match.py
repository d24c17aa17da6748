"""The match rule: a linked customer and its CRM record must agree on name and billing address.

"Agree" means equal after a declared canonicalisation (DESIGN.md):

- ``exact`` (default): trim leading/trailing white space and apply Unicode NFC. Nothing else:
  "Suite 100" and "Ste 100" differ, "ACME" and "Acme" differ.
- ``normalized``: additionally casefold, collapse inner white space, and treat a country name
  as its ISO 3166-1 alpha-2 code ("Germany" ≡ "DE").

In both modes an empty value and a missing one are the same (CRMs send ``""`` or ``null``).
:func:`compare` returns a report naming each differing field with both values, so an
operator sees *why* a record does not match.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sync.customer import MATCH_FIELDS, FieldValue, country_from_name

MatchMode = Literal["exact", "normalized"]
MATCH_MODES: tuple[MatchMode, ...] = ("exact", "normalized")

_COUNTRY_FIELDS = frozenset({"address.country", "address.country_code"})


def _exact(value: FieldValue) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # NFC first so that white space hidden in compatibility forms is seen by strip(), and
    # again after, because removing an edge character can leave a new composable pair.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).strip())


def canonical(value: FieldValue, mode: MatchMode = "exact", field: str = "") -> str:
    """The canonical form of one field value under ``mode``; equal forms agree."""
    text = _exact(value)
    if mode == "exact":
        return text
    text = unicodedata.normalize("NFC", " ".join(text.casefold().split()))
    if field in _COUNTRY_FIELDS and text:
        code = country_from_name(text)
        if code is not None:
            return code.casefold()
    return text


def values_agree(a: FieldValue, b: FieldValue, mode: MatchMode = "exact", field: str = "") -> bool:
    """Whether two values of ``field`` agree under ``mode``."""
    return canonical(a, mode, field) == canonical(b, mode, field)


@dataclass(frozen=True)
class FieldDifference:
    """One field on which the two sides disagree, with both values as they are."""

    field: str
    billing: FieldValue
    crm: FieldValue


@dataclass(frozen=True)
class MatchReport:
    """The outcome of a match check; ``matches`` is true when no field differs."""

    mode: MatchMode
    differences: tuple[FieldDifference, ...]

    @property
    def matches(self) -> bool:
        return not self.differences

    def fields(self) -> list[str]:
        """The names of the differing fields."""
        return [d.field for d in self.differences]


def compare(
    billing: Mapping[str, FieldValue],
    crm: Mapping[str, FieldValue],
    mode: MatchMode = "exact",
    fields: tuple[str, ...] = MATCH_FIELDS,
) -> MatchReport:
    """Check name and billing address (flat field names) of both sides under ``mode``.

    A field that one side does not carry at all (e.g. a CRM without ``address.line3`` in
    its map) is left out of the check rather than counted as empty.
    """
    differences = tuple(
        FieldDifference(name, billing.get(name), crm.get(name))
        for name in fields
        if name in billing
        and name in crm
        and not values_agree(billing.get(name), crm.get(name), mode, name)
    )
    return MatchReport(mode, differences)
