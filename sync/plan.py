"""Run counters and the plan: what a run did, or in plan mode what it would do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sync.customer import FieldValue

COUNTERS: tuple[str, ...] = (
    "pulled",
    "created",
    "linked",
    "updated",
    "unchanged",
    "pushed",
    "crm_created",
    "conflicts_opened",
    "failed",
    "deleted",
    "merged",
    "restored",
    "ignored",
    "contacts",
    # API calls per step: reading accounts / companies, reading contacts, writing
    "calls_pull",
    "calls_contacts",
    "calls_push",
)


def new_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


@dataclass
class Plan:
    """Everything a run would do on each side, with nothing written anywhere."""

    billing_creates: list[dict[str, Any]] = field(default_factory=list)
    billing_updates: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    crm_creates: list[dict[str, Any]] = field(default_factory=list)
    crm_updates: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    removals: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def billing_update(
        self, customer_id: str, crm_id: str, name: str, before: FieldValue, after: FieldValue
    ) -> None:
        self.billing_updates.append(
            {
                "customer_id": customer_id,
                "crm_id": crm_id,
                "field": name,
                "from": before,
                "to": after,
            }
        )

    def crm_update(
        self, customer_id: str, crm_id: str, name: str, before: FieldValue, after: FieldValue
    ) -> None:
        self.crm_updates.append(
            {
                "customer_id": customer_id,
                "crm_id": crm_id,
                "field": name,
                "from": before,
                "to": after,
            }
        )

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return asdict(self)

    def is_empty(self) -> bool:
        return not any(self.as_dict().values())
