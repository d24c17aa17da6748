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
#: every HubSpot-defined type id between the two (primary, unlabeled)
HUBSPOT_DEFINED_TYPES = {("contacts", "companies"): {1, 279}, ("companies", "contacts"): {2, 280}}


@dataclass(frozen=True)
class Change:
    """What happened to one record, for webhooks."""

    object_type: str  # "companies" / "contacts"
    kind: str  # creation / propertyChange / deletion / merge / restore / associationChange
    object_id: int
    source: str  # changeSource: CRM_UI, INTEGRATION, ...
    occurred_ms: int
    properties: dict[str, str | None] = field(default_factory=dict)
    primary_id: int | None = None
    merged_ids: tuple[int, ...] = ()
    new_id: int | None = None
    #: a merge's properties carried over from the secondary record
    properties_moved: int = 0
    #: an association change: the company (``object_id`` is the contact), whether it was
    #: removed, and whether it is (or was) the contact's primary company
    to_id: int | None = None
    removed: bool = False
    primary: bool = False


#: properties a merge never copies: ids, stamps and what the merge itself sets
_MERGE_SKIPPED = frozenset(
    {
        "hs_object_id",
        "createdate",
        "hs_createdate",
        "hs_lastmodifieddate",
        "lastmodifieddate",
        "hs_merged_object_ids",
        "associatedcompanyid",
    }
)


def _merged_ids(rec: Record) -> list[str]:
    return [x for x in (rec.props.get("hs_merged_object_ids") or "").split(";") if x]


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

    def __init__(
        self,
        on_change: Callable[[list[Change]], None] | None = None,
        *,
        merge_keeps_primary_id: bool = False,
        address3: bool = False,
        search_delay_ms: Callable[[], int] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        #: merges as HubSpot did them before 2024 (the primary keeps its id) instead of
        #: giving the merged record a new id
        self.merge_keeps_primary_id = merge_keeps_primary_id
        self.clock = Clock()
        self.companies = company_store(address3=address3)
        self.contacts = contact_store()
        if search_delay_ms is not None:
            # how long a write made now takes to reach the search index (a fault)
            self.companies.search_delay_ms = self.contacts.search_delay_ms = search_delay_ms
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
                if line3 and "address3" not in self.companies.properties:
                    # no third line in this portal: as a user would type it, in address2
                    line2, line3 = ", ".join(x for x in (line2, line3) if x), None
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

    def _link(self, contact: Record, company: Record, primary: bool = False) -> None:
        if primary and company.id in contact.links:
            contact.links.remove(company.id)
        if primary:
            # the contact's one primary company: the one it had stays associated, unlabeled
            contact.links.insert(0, company.id)
        elif company.id not in contact.links:
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

    def associate(
        self,
        from_type: str,
        from_id: int,
        to_type: str,
        to_id: int,
        primary: bool = False,
        source: str = "INTEGRATION",
    ) -> None:
        """Associate two records; ``primary`` (the HubSpot-defined primary type, 1 or 2,
        among the types asked) makes the company the contact's primary one."""
        with self.lock:
            a = self.store(from_type).get(from_id)
            b = self.store(to_type).get(to_id)
            if self.store(from_type) is self.store(to_type):
                raise StoreError(
                    400, "VALIDATION_ERROR", "cannot associate an object type with itself"
                )
            contact, company = (a, b) if self.store(from_type) is self.contacts else (b, a)
            self._link(contact, company, primary)
            change = self._association_change(contact, company, removed=False, source=source)
        self._emit([change])

    def dissociate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        with self.lock:
            a = self.store(from_type).records.get(from_id)
            b = self.store(to_type).records.get(to_id)
            if a is None or b is None:
                return
            contact, company = (a, b) if self.store(from_type) is self.contacts else (b, a)
            change = self._association_change(contact, company, removed=True, source="INTEGRATION")
            self._unlink(contact, company)
        self._emit([change])

    def _association_change(
        self, contact: Record, company: Record, *, removed: bool, source: str
    ) -> Change:
        """(the caller holds the lock) The change a contact-company association made, for
        the ``contact.associationChange`` / ``company.associationChange`` webhooks."""
        return Change(
            "contacts",
            "associationChange",
            contact.id,
            source,
            self.clock.now(),
            to_id=company.id,
            removed=removed,
            primary=bool(contact.links) and contact.links[0] == company.id,
        )

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
        """Merge ``loser_id`` into ``primary_id``; the surviving record.

        By default (``merge_keeps_primary_id`` false) the merge works as HubSpot's has since
        2024 (https://developers.hubspot.com/changelog/updated-merge-functionality-for-contacts-and-companies):
        "a new record with a new ID will be created for the resulting merged record, with
        both records merged into the new one. [...] both of the previous IDs will point to
        the resulting merged record, so fetching any records using the original IDs will
        return the new merged record with the new ID." The new record takes the primary's
        values, fills its empty ones from the other record, takes both records'
        associations and lists both old ids (and the ids merged into them before) in
        ``hs_merged_object_ids``. The old records are neither listed nor archived: they
        only resolve to the new one on GET, batch read and PATCH.

        With ``merge_keeps_primary_id`` (the older behaviour) the primary keeps its id and
        the loser is archived, resolving to it."""
        with self.lock:
            store = self.store(object_type)
            if primary_id == loser_id:
                raise StoreError(400, "VALIDATION_ERROR", "Cannot merge an object into itself")
            primary = store.get(primary_id, resolve_merged=False)
            loser = store.get(loser_id, resolve_merged=False)
            ms = self.clock.now()
            fill: Props = {
                k: v
                for k, v in loser.props.items()
                if v
                and not primary.props.get(k)
                and k in store.properties
                and k not in _MERGE_SKIPPED
                and k not in store.unique
            }
            moved = len(fill)  # the properties the secondary record gives the merged one
            merged_ids = [
                *_merged_ids(primary),
                str(primary.id),
                str(loser.id),
                *_merged_ids(loser),
            ]
            if self.merge_keeps_primary_id:
                merged_ids.remove(str(primary.id))
                store.archive(loser, ms, merged_into=primary.id)
                self._move_associations(store, loser, primary)
                fill["hs_merged_object_ids"] = ";".join(dict.fromkeys(merged_ids))
                store.update(primary, fill, ms)
                survivor = primary
            else:
                values: Props = {
                    k: v
                    for k, v in primary.props.items()
                    if k in store.properties and k not in _MERGE_SKIPPED
                }
                values.update(fill)
                unique = {k: values.pop(k) for k in list(values) if k in store.unique}
                for old in (primary, loser):
                    store.merge_away(old, ms)
                unique_values = {
                    k: v or loser.props.get(k) for k, v in unique.items() if v or loser.props.get(k)
                }
                survivor = store.create({**values, **unique_values}, ms)
                survivor.props["hs_merged_object_ids"] = ";".join(dict.fromkeys(merged_ids))
                for old in (primary, loser):
                    old.merged_into = survivor.id
                    self._move_associations(store, old, survivor)
        self._emit(
            [
                Change(
                    store.object_type,
                    "merge",
                    survivor.id,
                    source,
                    ms,
                    primary_id=primary.id,
                    merged_ids=(primary.id, loser.id),
                    new_id=survivor.id,
                    properties_moved=moved,
                )
            ]
        )
        return survivor

    def _move_associations(self, store: ObjectStore, old: Record, survivor: Record) -> None:
        """The associations of a merged-away record move to the survivor."""
        other = self.other(store)
        for linked in list(old.links):
            rec = other.records.get(linked)
            if rec is None:
                continue
            if store is self.companies:
                self._unlink(rec, old)
                self._link(rec, survivor)
            else:
                self._unlink(old, rec)
                self._link(survivor, rec)

    def touch(self, object_type: str, ids: Iterable[int] | None, ms: int | None) -> int:
        """Set the modification stamp of many records (all active ones when ``ids`` is None)
        to the same millisecond, without webhooks: the >10,000-in-one-ms case."""
        with self.lock:
            store = self.store(object_type)
            stamp = ms if ms is not None else self.clock.now()
            self.clock.now()
            return store.touch(list(store.active) if ids is None else ids, stamp)
