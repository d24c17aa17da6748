"""The emulated portal: both object stores, their associations, and the changes they emit.

Every change (by the API, i.e. an integration, or by the control API, i.e. a CRM user)
goes through :class:`Portal`, which bumps the modification stamp and tells the change
listener (the webhook dispatcher) what happened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox import seed as seed_data
from sandbox.hubspot.store import (
    Clock,
    ObjectStore,
    Props,
    Record,
    StoreError,
    company_store,
    contact_store,
)

_TYPE_ALIASES = {
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
}
TYPE_IDS = {"companies": "0-2", "contacts": "0-1"}
# HubSpot-defined default association type ids (v4)
ASSOCIATION_TYPE_IDS = {("contacts", "companies"): 1, ("companies", "contacts"): 2}


@dataclass(frozen=True)
class Change:
    """What happened to one record, for webhooks."""

    object_type: str  # "companies" / "contacts"
    kind: str  # creation / propertyChange / deletion / merge / restore
    object_id: int
    source: str  # changeSource: CRM_UI, INTEGRATION, ...
    occurred_ms: int
    properties: dict[str, str | None] = field(default_factory=dict)
    primary_id: int | None = None
    merged_ids: tuple[int, ...] = ()


def canonical_type(name: str) -> str:
    try:
        return _TYPE_ALIASES[name.lower()]
    except KeyError:
        raise StoreError(400, "VALIDATION_ERROR", f"Unknown object type {name!r}") from None


def split_street(street: str) -> tuple[str, str | None, str | None]:
    """HubSpot has one-line ``address`` and ``address2``; a third line goes to ``address3``."""
    lines = [line.strip() for line in street.split("\n") if line.strip()]
    lines += [""] * (3 - len(lines))
    first, second = lines[0], lines[1] or None
    third = "\n".join(lines[2:]).strip() or None
    return first, second, third


class Portal:
    """One HubSpot portal's CRM data."""

    def __init__(self, on_change: Callable[[list[Change]], None] | None = None) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.companies = company_store()
        self.contacts = contact_store()
        self.on_change = on_change

    def store(self, object_type: str) -> ObjectStore:
        return self.companies if canonical_type(object_type) == "companies" else self.contacts

    def other(self, store: ObjectStore) -> ObjectStore:
        return self.contacts if store is self.companies else self.companies

    def clear(self) -> None:
        with self.lock:
            self.companies.clear()
            self.contacts.clear()

    def _emit(self, changes: list[Change]) -> None:
        if changes and self.on_change is not None:
            self.on_change(changes)

    # -- seed ----------------------------------------------------------------------------

    def seed(self, count: int, seed: int = 0) -> list[int]:
        """``count`` realistic companies (with 2-3 contacts each) from ``sandbox.seed``.

        Stamps are spread one millisecond apart, ending now, in creation order."""
        ids: list[int] = []
        with self.lock:
            start = len(self.companies.records)
            base = self.clock.now() - count
            for n, sc in enumerate(seed_data.companies(count, seed=seed, start=start)):
                ms = base + n
                line1, line2, line3 = split_street(sc.street)
                props: Props = {
                    "name": sc.name,
                    "address": line1,
                    "address2": line2,
                    "address3": line3,
                    "city": sc.city,
                    "state": sc.state or None,
                    "zip": sc.postal_code,
                    "country": sc.country,
                    "phone": sc.phone,
                    "domain": sc.domain,
                    "website": f"https://www.{sc.domain}",
                    "billing_email": f"billing@{sc.domain}",
                }
                company = self.companies.create(
                    {k: v for k, v in props.items() if v is not None}, ms
                )
                ids.append(company.id)
                for c in sc.contacts:
                    contact = self.contacts.create(
                        {
                            "firstname": c.first_name,
                            "lastname": c.last_name,
                            "email": c.email,
                            "phone": c.phone,
                            "company": sc.name,
                        },
                        ms,
                    )
                    self._link(contact, company)
        return ids

    # -- associations --------------------------------------------------------------------

    def _link(self, contact: Record, company: Record) -> None:
        if company.id not in contact.links:
            contact.links.append(company.id)
        if contact.id not in company.links:
            company.links.append(contact.id)
        contact.props["associatedcompanyid"] = str(contact.links[0])

    def _unlink(self, contact: Record, company: Record) -> None:
        if company.id in contact.links:
            contact.links.remove(company.id)
        if contact.id in company.links:
            company.links.remove(contact.id)
        contact.props["associatedcompanyid"] = str(contact.links[0]) if contact.links else None

    def associate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        with self.lock:
            a = self.store(from_type).get(from_id)
            b = self.store(to_type).get(to_id)
            if self.store(from_type) is self.store(to_type):
                raise StoreError(
                    400, "VALIDATION_ERROR", "cannot associate an object type with itself"
                )
            contact, company = (a, b) if self.store(from_type) is self.contacts else (b, a)
            self._link(contact, company)

    def dissociate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        with self.lock:
            a = self.store(from_type).records.get(from_id)
            b = self.store(to_type).records.get(to_id)
            if a is None or b is None:
                return
            contact, company = (a, b) if self.store(from_type) is self.contacts else (b, a)
            self._unlink(contact, company)

    # -- changes -------------------------------------------------------------------------

    def create(self, object_type: str, props: dict[str, Any], source: str = "CRM_UI") -> Record:
        with self.lock:
            store = self.store(object_type)
            clean = store.check_properties(props)
            rec = store.create(clean, self.clock.now())
            changes = [Change(store.object_type, "creation", rec.id, source, rec.modified_ms)]
            changes += [
                Change(store.object_type, "propertyChange", rec.id, source, rec.modified_ms, {k: v})
                for k, v in clean.items()
                if v
            ]
        self._emit(changes)
        return rec

    def update(
        self, object_type: str, rec: Record, props: dict[str, Any], source: str = "CRM_UI"
    ) -> Record:
        with self.lock:
            store = self.store(object_type)
            clean = store.check_properties(props)
            changed = store.update(rec, clean, self.clock.now())
            changes = [
                Change(store.object_type, "propertyChange", rec.id, source, rec.modified_ms, {k: v})
                for k, v in changed.items()
            ]
        self._emit(changes)
        return rec

    def archive(self, object_type: str, rec: Record, source: str = "CRM_UI") -> None:
        with self.lock:
            store = self.store(object_type)
            if rec.archived_ms is not None:
                return
            ms = self.clock.now()
            store.archive(rec, ms)
        self._emit([Change(store.object_type, "deletion", rec.id, source, ms)])

    def restore(self, object_type: str, rec_id: int, source: str = "CRM_UI") -> Record:
        with self.lock:
            store = self.store(object_type)
            rec = store.records.get(rec_id)
            if rec is None or rec.archived_ms is None:
                raise StoreError(404, "OBJECT_NOT_FOUND", f"No archived object with id {rec_id}")
            if rec.merged_into is not None:
                raise StoreError(
                    400, "VALIDATION_ERROR", f"{rec_id} was merged and cannot be restored"
                )
            store.restore(rec, self.clock.now())
        self._emit([Change(store.object_type, "restore", rec.id, source, rec.modified_ms)])
        return rec

    def merge(
        self, object_type: str, primary_id: int, loser_id: int, source: str = "CRM_UI"
    ) -> Record:
        """Merge ``loser_id`` into ``primary_id``.

        The survivor keeps its id (``newObjectId`` in the webhook = ``primaryObjectId``): the
        sandbox picks this of the two behaviours HubSpot documents. The loser is archived,
        resolves to the survivor on GET, and is listed in the survivor's
        ``hs_merged_object_ids``; the survivor fills its empty properties from the loser and
        takes over the loser's associations."""
        with self.lock:
            store = self.store(object_type)
            if primary_id == loser_id:
                raise StoreError(400, "VALIDATION_ERROR", "Cannot merge an object into itself")
            winner = store.get(primary_id, resolve_merged=False)
            loser = store.get(loser_id, resolve_merged=False)
            ms = self.clock.now()
            fill: Props = {
                k: v
                for k, v in loser.props.items()
                if v
                and not winner.props.get(k)
                and k not in store.unique
                and k in store.properties
                and k
                not in {
                    "hs_object_id",
                    "createdate",
                    "hs_createdate",
                    "hs_lastmodifieddate",
                    "lastmodifieddate",
                    "hs_merged_object_ids",
                    "associatedcompanyid",
                }
            }
            merged_ids = [
                x for x in (winner.props.get("hs_merged_object_ids") or "").split(";") if x
            ]
            merged_ids += [str(loser.id)]
            merged_ids += [
                x for x in (loser.props.get("hs_merged_object_ids") or "").split(";") if x
            ]
            store.archive(loser, ms, merged_into=winner.id)
            # records earlier merged into the loser now resolve (through it) to the winner
            other = self.other(store)
            for linked in list(loser.links):
                rec = other.records.get(linked)
                if rec is None:
                    continue
                if store is self.companies:
                    self._unlink(rec, loser)
                    self._link(rec, winner)
                else:
                    self._unlink(loser, rec)
                    self._link(winner, rec)
            fill["hs_merged_object_ids"] = ";".join(dict.fromkeys(merged_ids))
            store.update(winner, fill, ms)
        self._emit(
            [
                Change(
                    store.object_type,
                    "merge",
                    winner.id,
                    source,
                    ms,
                    primary_id=winner.id,
                    merged_ids=(winner.id, loser.id),
                )
            ]
        )
        return winner

    def touch(self, object_type: str, ids: Iterable[int] | None, ms: int | None) -> int:
        """Set the modification stamp of many records (all active ones when ``ids`` is None)
        to the same millisecond, without webhooks: the >10,000-in-one-ms case."""
        with self.lock:
            store = self.store(object_type)
            stamp = ms if ms is not None else self.clock.now()
            self.clock.now()
            return store.touch(list(store.active) if ids is None else ids, stamp)
