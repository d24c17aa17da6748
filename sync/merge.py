"""The three-way merge of one linked record, field by field (DESIGN.md, "Two-way sync").

Pure functions: given what billing has, what the CRM has and the *base* both agreed on at
the last sync, decide per field what to write where. Change detection uses the
connection's match-mode canonical form, so "Acme " and "Acme" are no change in any mode.

| billing changed | CRM changed | direction both     | crm_to_billing | billing_to_crm |
|-----------------|-------------|--------------------|----------------|----------------|
| no              | no          | nothing            | nothing        | nothing        |
| no              | yes         | CRM → billing      | CRM → billing  | billing → CRM  |
| yes             | no          | billing → CRM      | CRM → billing  | billing → CRM  |
| yes, same value | yes         | agree              | agree          | agree          |
| yes             | yes, other  | **conflict**       | CRM → billing  | billing → CRM  |

A one-way field keeps its source's value whatever the other side did, so the two sides can
never drift. On a *first link* there is no base: name and billing address must pass the
match rule or open a conflict; for other fields an empty side takes the other's value and
otherwise the field's source wins (the CRM for ``both``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sync.customer import MATCH_FIELDS, FieldValue
from sync.match import MatchMode, canonical

_MATCH = frozenset(MATCH_FIELDS)


@dataclass
class FieldConflict:
    field: str
    base: FieldValue
    billing: FieldValue
    crm: FieldValue


@dataclass
class MergeOutcome:
    """What to do for one record: values to write on each side, the base after it, and the
    fields that conflict (written on neither side)."""

    to_billing: dict[str, FieldValue] = field(default_factory=dict)
    to_crm: dict[str, FieldValue] = field(default_factory=dict)
    #: the base once ``to_billing`` is applied; pushed fields join it when the push succeeds
    base: dict[str, FieldValue] = field(default_factory=dict)
    conflicts: list[FieldConflict] = field(default_factory=list)


def _empty(value: FieldValue) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def merge_record(
    *,
    fields: Iterable[str],
    billing: Mapping[str, FieldValue],
    crm: Mapping[str, FieldValue],
    base: Mapping[str, FieldValue] | None,
    directions: Mapping[str, str],
    conflicted: frozenset[str] | set[str] = frozenset(),
    mode: MatchMode = "exact",
) -> MergeOutcome:
    """Merge one linked record. ``base`` None means the record is being linked now."""
    outcome = MergeOutcome()
    for name in fields:
        direction = directions.get(name, "both")
        if direction == "none" or name not in crm:
            continue
        b, c = billing.get(name), crm.get(name)
        cb, cc = canonical(b, mode, name), canonical(c, mode, name)
        if name in conflicted:
            # neither side is written until an operator resolves it; keep the old base
            if base is not None and name in base:
                outcome.base[name] = base[name]
            continue
        if cb == cc:
            outcome.base[name] = c
            continue
        if base is None:
            _first_link(outcome, name, b, c, direction)
            continue
        cbase = canonical(base.get(name), mode, name)
        billing_changed, crm_changed = cb != cbase, cc != cbase
        if direction == "crm_to_billing" or (crm_changed and not billing_changed):
            if direction == "billing_to_crm":
                outcome.to_crm[name] = b
                outcome.base[name] = base.get(name)
            else:
                outcome.to_billing[name] = c
                outcome.base[name] = c
        elif direction == "billing_to_crm" or (billing_changed and not crm_changed):
            outcome.to_crm[name] = b
            outcome.base[name] = base.get(name)
        else:
            outcome.conflicts.append(FieldConflict(name, base.get(name), b, c))
            outcome.base[name] = base.get(name)
    return outcome


def _first_link(
    outcome: MergeOutcome, name: str, b: FieldValue, c: FieldValue, direction: str
) -> None:
    if name in _MATCH and direction == "both":
        # the match rule: name and billing address must agree, or an operator decides
        outcome.conflicts.append(FieldConflict(name, None, b, c))
    elif direction == "billing_to_crm" or (_empty(c) and not _empty(b)):
        outcome.to_crm[name] = b
    else:
        outcome.to_billing[name] = c
        outcome.base[name] = c
