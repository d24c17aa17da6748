"""Why a conflict is a conflict, in sentences an operator can act on.

A conflict holds three values: the *base* (what both sides agreed on at the last sync),
the billing value and the CRM value. :func:`explain_conflict` says how it arose (both sides
changed the field since the base, or a first link whose name or billing address does not
match) and how the two values differ under the connection's match rule: only in letter
case, only in white space, a country named two ways, one side empty, or different text,
and whether the looser ``normalized`` rule would accept them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.customer import MATCH_FIELDS, FieldValue, country_from_name
from sync.match import MatchMode, canonical

_COUNTRY_FIELDS = frozenset({"address.country", "address.country_code"})


@dataclass(frozen=True)
class ConflictFacts:
    """What a conflict row holds, plus what the store knows around it."""

    kind: str
    field: str
    base: FieldValue
    billing: FieldValue
    crm: FieldValue
    mode: MatchMode
    #: the customer that already has the CRM's e-mail, for an e-mail conflict
    email_owner: str | None = None


def _shown(value: FieldValue) -> str:
    if value is None or value == "":
        return "empty"
    return repr(value) if isinstance(value, str) else str(value)


def difference(a: FieldValue, b: FieldValue, field: str) -> str:
    """How two values of ``field`` differ, as a phrase (``"only in letter case"``)."""
    exact_a, exact_b = canonical(a, "exact", field), canonical(b, "exact", field)
    if exact_a == exact_b:
        return "only in surrounding white space or Unicode form"
    if not exact_a or not exact_b:
        return "in that one side is empty"
    if exact_a.casefold() == exact_b.casefold():
        return "only in letter case"
    if " ".join(exact_a.split()) == " ".join(exact_b.split()):
        return "only in inner white space"
    if " ".join(exact_a.casefold().split()) == " ".join(exact_b.casefold().split()):
        return "only in letter case and white space"
    if field in _COUNTRY_FIELDS:
        code_a, code_b = country_from_name(exact_a), country_from_name(exact_b)
        if code_a is not None and code_a == code_b:
            return f"only in how they name the country ({code_a})"
    prefix = _common_prefix(exact_a, exact_b)
    if prefix >= 3:
        return f"from character {prefix + 1} on ({exact_a[prefix:]!r} against {exact_b[prefix:]!r})"
    return "as different text"


def _common_prefix(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def explain_conflict(facts: ConflictFacts) -> list[str]:
    """Sentences that say why the conflict was opened and how the values differ."""
    if facts.kind == "merge":
        return [
            f"The CRM merged record {facts.base} into a record that is linked to another "
            "billing customer, so two billing customers now point at one CRM record.",
            "crmsync never merges billing customers: acknowledge it here, and merge the two "
            "customers in billing if they are one.",
        ]
    name = facts.field
    lines: list[str] = []
    if facts.email_owner is not None:
        lines.append(
            f"The CRM's e-mail {_shown(facts.crm)} already belongs to another customer "
            f"({facts.email_owner}): e-mails are unique in an organisation, so it was held "
            "back while the rest of the record synced."
        )
    elif facts.base is None and name in MATCH_FIELDS:
        lines.append(
            "When the CRM record was first linked to this customer (same external ID), their "
            f"{name} did not match: the match rule requires name and billing address to "
            "agree, so crmsync asks instead of overwriting billing data."
        )
    else:
        lines.append(
            f"Both sides changed {name} since the last sync (when both had "
            f"{_shown(facts.base)}): billing to {_shown(facts.billing)}, the CRM to "
            f"{_shown(facts.crm)}. Neither side is written until you choose."
        )
    how = difference(facts.billing, facts.crm, name)
    lines.append(f"The two values differ {how}.")
    if name in MATCH_FIELDS:
        if facts.mode == "exact":
            rule = "the exact rule (trim surrounding white space, Unicode NFC; nothing else)"
            if canonical(facts.billing, "normalized", name) == canonical(
                facts.crm, "normalized", name
            ):
                lines.append(
                    f"Under {rule} they differ; the normalized rule (a connection "
                    "setting) would accept them as the same."
                )
            else:
                lines.append(f"Under {rule} they differ, and under the normalized rule too.")
        else:
            lines.append(
                "Under the normalized rule (also any case, collapsed white space, a country "
                "name equal to its code) they still differ."
            )
    return lines
