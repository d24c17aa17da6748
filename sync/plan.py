"""Run counters and the plan: what a run did, or in plan mode what it would do.

A plan is the run's decisions shown instead of applied (:meth:`Plan.show`): the same
:class:`sync.decision.PageDecision` values a run pushes and writes, so a plan says exactly
what the run would do (what the CRM or the store would refuse aside).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sync.decision import ContactsDecision, Failure, PageDecision, RecordDecision

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
    # contacts from the billing side: written to the CRM, created there, or linked to the
    # CRM's contact of the same e-mail instead of created (adopted); flagged as deleted in
    # the CRM
    "contacts_pushed",
    "contacts_crm_created",
    "contacts_adopted",
    "contacts_flagged",
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
    #: billing contacts to create in the CRM / to change there / to link to the CRM's
    #: contact of their e-mail instead of creating one (adopted); CRM contacts to attach to
    #: customers or to change billing contacts with; contacts flagged as deleted in the CRM
    contact_creates: list[dict[str, Any]] = field(default_factory=list)
    contact_updates: list[dict[str, Any]] = field(default_factory=list)
    contact_adoptions: list[dict[str, Any]] = field(default_factory=list)
    contacts_from_crm: list[dict[str, Any]] = field(default_factory=list)
    contact_flags: list[dict[str, Any]] = field(default_factory=list)

    def show(self, decision: PageDecision) -> None:
        """Add a page's decision to the plan, section by section."""
        if decision.contacts is not None:
            self._contacts(decision.contacts)
        for record in decision.records:
            self._billing(record)
            self._crm(record)
            self._links_and_removals(record)
            self.conflicts.extend(
                {
                    "customer_id": c.customer_id,
                    "crm_id": c.crm_id,
                    "kind": c.kind,
                    "field": c.field,
                    "base": c.base,
                    "billing": c.billing,
                    "crm": c.crm,
                }
                for c in record.conflicts
            )
            if record.failure is not None:
                self._failure(record.failure)
        if decision.contacts is not None:
            for failure in decision.contacts.failures:
                self._failure(failure)
            self.failures.extend(
                {
                    "direction": "contact",
                    "crm_id": None,
                    "customer_id": t.customer_id,
                    "kind": "duplicate",
                    "message": f"contact {t.contact_id}: {t.message}",
                }
                for t in decision.contacts.taken
            )

    def _failure(self, failure: Failure) -> None:
        self.failures.append(
            {
                "direction": failure.direction,
                "crm_id": failure.crm_id,
                "customer_id": failure.customer_id,
                "kind": failure.kind,
                "message": failure.message,
            }
        )

    def _billing(self, record: RecordDecision) -> None:
        if record.new_customer is not None:
            name = record.new_customer.fields.get("customer_name")
            self.billing_creates.append({"crm_id": record.crm_id, "customer_name": name})
        if record.change is not None:
            before = record.change.customer.fields
            self.billing_updates.extend(
                {
                    "customer_id": record.customer_id,
                    "crm_id": record.crm_id,
                    "field": name,
                    "from": before.get(name),
                    "to": value,
                }
                for name, value in record.change.changes.items()
            )

    def _crm(self, record: RecordDecision) -> None:
        push = record.push
        if push is None:
            return
        if push.crm_id is None:
            self.crm_creates.append(
                {
                    "customer_id": push.customer_id,
                    "customer_name": record.name,
                    "fields": push.fields,
                }
            )
            return
        self.crm_updates.extend(
            {
                "customer_id": push.customer_id,
                "crm_id": push.crm_id,
                "field": name,
                "from": push.before.get(name),
                "to": value,
            }
            for name, value in push.fields.items()
        )

    def _links_and_removals(self, record: RecordDecision) -> None:
        link = record.link
        if link is not None and link.new and record.new_customer is None:
            # linking to a customer billing already had writes its id into the record
            written = record.push is not None and record.push.write_billing_id
            self.links.append(
                {
                    "crm_id": record.crm_id,
                    "customer_id": record.customer_id,
                    "name": record.name,
                    "billing_id_written": written,
                }
            )
        for kind in ("deleted", "merged", "restored"):
            if kind in record.counts:
                removal = {"kind": kind, "crm_id": record.crm_id, "customer_id": record.customer_id}
                for audit in record.audits:
                    if "merged_into" in audit.detail:
                        removal["merged_into"] = audit.detail["merged_into"]
                self.removals.append(removal)
        if "ignored" in record.counts:
            self.ignored.append({"crm_id": record.crm_id, "name": record.name})

    def _contacts(self, contacts: ContactsDecision) -> None:
        self._contact_pushes(contacts)
        self.contacts_from_crm.extend(
            {"crm_id": c.crm_id, "customer_id": c.customer_id, "name": c.name, "email": c.email}
            for c in contacts.attach
        )
        self.contacts_from_crm.extend(
            {"contact_id": c.id, "customer_id": c.customer_id, "changes": dict(c.changes)}
            for c in contacts.change
            if c.changes or c.crm_id is not None
        )
        self.contact_flags.extend({"contact_id": i} for i in contacts.flag)
        opened = [*contacts.conflicts, *(c for a in contacts.adoptions for c in a.conflicts)]
        self.conflicts.extend(
            {
                "customer_id": c.customer_id,
                "crm_id": c.crm_id,
                "kind": "contact",
                "field": f"contact.{c.field}",
                "base": c.base,
                "billing": c.billing,
                "crm": c.crm,
            }
            for c in opened
        )

    def _contact_pushes(self, contacts: ContactsDecision) -> None:
        self.contact_adoptions.extend(
            {
                "contact_id": a.contact_id,
                "customer_id": a.customer_id,
                "crm_id": a.crm_id,
                "account_id": a.account_id,
                "billing_changes": dict(a.change.changes),
                "crm_fields_filled": dict(a.fill),
            }
            for a in contacts.adoptions
        )
        for push in contacts.plain_pushes():
            if push.crm_id is None:
                self.contact_creates.append(
                    {
                        "contact_id": push.contact_id,
                        "customer_id": push.customer_id,
                        "account_id": push.account_id or None,  # None: NEW_ACCOUNT
                        "fields": dict(push.fields),
                    }
                )
                continue
            self.contact_updates.extend(
                {
                    "contact_id": push.contact_id,
                    "crm_id": push.crm_id,
                    "field": name,
                    "from": push.before.get(name),
                    "to": value,
                }
                for name, value in push.fields.items()
            )

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return asdict(self)

    def is_empty(self) -> bool:
        return not any(self.as_dict().values())
