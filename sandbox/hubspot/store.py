"""In-memory HubSpot CRM objects (companies, contacts) with the indexes the API needs.

Cost model (100,000 companies must page fast):

- ``active`` / ``archived``: sorted lists of ids. Ids only grow, so creation appends; list
  paging by ``after`` (the next id) is one bisect and a slice.
- ``index``: sorted ``(modified_ms, id)`` keys of the active records. Search filters on the
  modification stamp become bisects; ``EQ T AND hs_object_id GT L`` is a bisect as well.
  A bulk touch rebuilds it with one sort.
- search visibility: a write made while a search index delay is set (the
  ``search_index_delay_seconds`` fault) stamps ``searchable_ms``, when search first sees
  the record; until then search leaves it out (the other reads have it at once).
  ``search_pending_ms`` is the latest such time, so a search checks records only while
  one is pending.

Every public method takes the store lock, so the API (on the server's event loop) and the
control methods (on test threads) can run at once.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Props = dict[str, str | None]

#: an object type's singular name, as association types spell it (``contact_to_company``)
SINGULAR = {"companies": "company", "contacts": "contact"}

# (name, label, type, fieldType, group, unique)
_COMPANY_PROPERTIES: list[tuple[str, str, str, str, bool]] = [
    ("name", "Company name", "string", "text", False),
    ("address", "Street address", "string", "text", False),
    ("address2", "Street address 2", "string", "text", False),
    ("city", "City", "string", "text", False),
    ("state", "State/Region", "string", "text", False),
    ("zip", "Postal code", "string", "text", False),
    ("country", "Country/Region", "string", "text", False),
    ("phone", "Phone number", "string", "phonenumber", False),
    ("domain", "Company domain name", "string", "text", False),
    ("website", "Website URL", "string", "text", False),
    ("industry", "Industry", "string", "text", False),
    ("description", "Description", "string", "textarea", False),
    ("hs_object_id", "Record ID", "number", "number", True),
    ("createdate", "Create date", "datetime", "date", False),
    ("hs_createdate", "Object create date/time", "datetime", "date", False),
    ("hs_lastmodifieddate", "Last modified date", "datetime", "date", False),
    ("hs_merged_object_ids", "Merged record IDs", "enumeration", "checkbox", False),
    ("crmsync_id", "crmsync ID", "string", "text", True),  # custom, unique (upsert key)
    ("billing_email", "Billing email", "string", "text", False),  # custom
    ("segment", "Segment", "string", "text", False),  # custom
]

#: a custom property some portals have (someone created it: HubSpot has no third address
#: line); a new portal does not, so the sandbox has it only when asked
#: (``HubSpotSandbox(address3=True)`` / ``set_address3``). HubSpot's default company
#: properties: https://knowledge.hubspot.com/properties/hubspots-default-company-properties
#: custom ones are made with the properties API:
#: https://developers.hubspot.com/docs/api-reference/latest/crm/properties/guide
ADDRESS3: tuple[str, str, str, str, bool] = (
    "address3",
    "Street address 3",
    "string",
    "text",
    False,
)

_CONTACT_PROPERTIES: list[tuple[str, str, str, str, bool]] = [
    ("firstname", "First name", "string", "text", False),
    ("lastname", "Last name", "string", "text", False),
    # HubSpot's contact identity: an API create of a taken e-mail is refused (409), see
    # ObjectStore.email_owner; not a "unique" property here, as seeds may repeat one
    ("email", "Email", "string", "text", False),
    ("phone", "Phone number", "string", "phonenumber", False),
    ("company", "Company name", "string", "text", False),
    ("associatedcompanyid", "Primary associated company ID", "number", "number", False),
    ("hs_object_id", "Record ID", "number", "number", True),
    ("createdate", "Create date", "datetime", "date", False),
    ("lastmodifieddate", "Last modified date", "datetime", "date", False),
    ("hs_lastmodifieddate", "Object last modified date/time", "datetime", "date", False),
    ("hs_merged_object_ids", "Merged record IDs", "enumeration", "checkbox", False),
    ("crmsync_id", "crmsync ID", "string", "text", True),
    # custom (crmsync): which communications a contact gets, a multiple-checkbox property
    ("crmsync_communications", "Communications", "enumeration", "checkbox", False),
]

READ_ONLY = {
    "hs_object_id",
    "createdate",
    "hs_createdate",
    "hs_lastmodifieddate",
    "lastmodifieddate",
    "hs_merged_object_ids",
    "associatedcompanyid",
}


@dataclass(frozen=True)
class PropertyDef:
    name: str
    label: str
    type: str
    field_type: str
    unique: bool

    def to_json(self, object_type: str) -> dict[str, Any]:
        custom = self.name in {
            "address3",
            "crmsync_id",
            "billing_email",
            "segment",
            "crmsync_communications",
        }
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": {"companies": "companyinformation"}.get(object_type, "contactinformation"),
            "description": "",
            "options": [],
            "displayOrder": -1,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": self.unique,
            "hidden": False,
            "hubspotDefined": not custom,
            "formField": not custom,
            "modificationMetadata": {
                "archivable": custom,
                "readOnlyDefinition": not custom,
                "readOnlyValue": self.name in READ_ONLY,
            },
            "archived": False,
            "createdAt": "2020-01-01T00:00:00.000Z",
            "updatedAt": "2020-01-01T00:00:00.000Z",
        }


def iso(ms: int) -> str:
    """HubSpot's ISO text for a millisecond stamp: ``2024-05-01T12:34:56.789Z``."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ms(value: str | int | float | None) -> int | None:
    """Milliseconds from ms-since-epoch text or ISO text (as HubSpot filters accept)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class Clock:
    """Milliseconds since the epoch; never goes backwards (two changes may share a ms)."""

    def __init__(self) -> None:
        self._last = 0

    def now(self) -> int:
        ms = int(time.time() * 1000)
        self._last = max(self._last, ms)
        return self._last


@dataclass
class Record:
    id: int
    props: Props
    created_ms: int
    modified_ms: int
    archived_ms: int | None = None
    merged_into: int | None = None
    #: when a new-id merge took this record into another (it is then neither listed nor
    #: archived; its id resolves to ``merged_into``)
    merged_ms: int | None = None
    #: associated ids of the other object type (contact -> companies, company -> contacts)
    links: list[int] = field(default_factory=list)
    #: when search first returns this record as it is (wall clock, ms; 0: at once)
    searchable_ms: int = 0


class StoreError(Exception):
    """A request the API refuses: HTTP status, category, message, context."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.context = context or {}
        self.sub_category = sub_category


# A change, for webhooks: (object type, kind, record id, details)
Change = tuple[str, str, int, dict[str, Any]]


class ObjectStore:
    """One object type's records and indexes."""

    def __init__(
        self,
        object_type: str,
        first_id: int,
        properties: list[tuple[str, str, str, str, bool]],
        modified_props: tuple[str, ...],
        default_props: tuple[str, ...],
    ) -> None:
        self.object_type = object_type  # "companies" / "contacts"
        self.properties = {p[0]: PropertyDef(*p) for p in properties}
        self.modified_props = modified_props
        self.default_props = default_props
        self.first_id = first_id
        self.next_id = first_id
        self.records: dict[int, Record] = {}
        self.active: list[int] = []
        self.archived: list[int] = []
        self.index: list[tuple[int, int]] = []
        self.unique: dict[str, dict[str, int]] = {
            name: {} for name, p in self.properties.items() if p.unique and name != "hs_object_id"
        }
        #: active records by lower-cased ``email`` (contacts), for :meth:`email_owner`
        self.emails: dict[str, set[int]] | None = {} if object_type == "contacts" else None
        #: how long a write made now takes to reach the search index (ms; the portal sets it)
        self.search_delay_ms: Callable[[], int] = lambda: 0
        #: the latest ``searchable_ms`` given: no record is hidden from search after it
        self.search_pending_ms = 0

    # -- helpers -------------------------------------------------------------------------

    def clear(self) -> None:
        self.next_id = self.first_id
        self.records.clear()
        self.active.clear()
        self.archived.clear()
        self.index.clear()
        for values in self.unique.values():
            values.clear()
        if self.emails is not None:
            self.emails.clear()
        self.search_pending_ms = 0

    def _email_index(self, rec: Record, add: bool, value: str | None = None) -> None:
        if self.emails is None:
            return
        email = (rec.props.get("email") if value is None else value) or ""
        key = email.strip().lower()
        if not key:
            return
        if add:
            self.emails.setdefault(key, set()).add(rec.id)
        else:
            owners = self.emails.get(key)
            if owners is not None:
                owners.discard(rec.id)
                if not owners:
                    del self.emails[key]

    def email_owner(self, email: Any, but: int | None = None) -> int | None:
        """The active contact holding ``email`` (any case), if any other than ``but``.

        "Email address is the primary unique identifier to avoid duplicate contacts in
        HubSpot" (https://developers.hubspot.com/docs/guides/api/crm/objects/contacts): an
        API create of a taken e-mail answers 409 ``CONFLICT`` "Contact already exists.
        Existing ID: ..."; a batch create with one refuses the whole batch
        (https://github.com/HubSpot/hubspot-api-python/issues/51)."""
        if self.emails is None or not isinstance(email, str) or not email.strip():
            return None
        owners = self.emails.get(email.strip().lower()) or set()
        return min((i for i in owners if i != but), default=None)

    def singular(self) -> str:
        return SINGULAR[self.object_type].upper()

    def stamp(self, rec: Record, ms: int, searchable_ms: int | None = None) -> None:
        """A write at ``ms``: the modification stamp, and when search sees it."""
        rec.modified_ms = ms
        text = iso(ms)
        for name in self.modified_props:
            rec.props[name] = text
        rec.searchable_ms = self.searchable_from() if searchable_ms is None else searchable_ms

    def searchable_from(self) -> int:
        """When search sees a write made now (0: at once)."""
        delay = self.search_delay_ms()
        if delay <= 0:
            return 0
        at = int(time.time() * 1000) + delay
        self.search_pending_ms = max(self.search_pending_ms, at)
        return at

    def index_pending(self) -> None:
        """The search index catches up: every write so far is searchable now."""
        for rec in self.records.values():
            rec.searchable_ms = 0
        self.search_pending_ms = 0

    def _index_remove(self, rec: Record) -> None:
        key = (rec.modified_ms, rec.id)
        i = bisect.bisect_left(self.index, key)
        if i < len(self.index) and self.index[i] == key:
            del self.index[i]

    def _index_add(self, rec: Record) -> None:
        bisect.insort(self.index, (rec.modified_ms, rec.id))

    @staticmethod
    def _remove_sorted(ids: list[int], value: int) -> None:
        i = bisect.bisect_left(ids, value)
        if i < len(ids) and ids[i] == value:
            del ids[i]

    def get(self, rec_id: int, *, archived: bool = False, resolve_merged: bool = True) -> Record:
        rec = self.records.get(rec_id)
        gone = rec is not None and (rec.archived_ms is not None or rec.merged_ms is not None)
        if rec is not None and gone and not archived:
            # a merged-away record resolves to the record it was merged into
            seen = 0
            while resolve_merged and rec is not None and rec.merged_into is not None and seen < 10:
                rec = self.records.get(rec.merged_into)
                seen += 1
            if rec is not None and (rec.archived_ms is not None or rec.merged_ms is not None):
                rec = None
        if rec is None or (archived and rec.archived_ms is None):
            raise StoreError(404, "OBJECT_NOT_FOUND", "resource not found", {"id": [str(rec_id)]})
        return rec

    def merge_away(self, rec: Record, ms: int) -> None:
        """A new-id merge took ``rec``: out of the lists and indexes, not archived."""
        self._index_remove(rec)
        self._remove_sorted(self.active, rec.id)
        self._email_index(rec, False)
        rec.merged_ms = ms
        for name, values in self.unique.items():
            value = rec.props.get(name)
            if value and values.get(value) == rec.id:
                del values[value]

    def find(self, value: str, id_property: str | None, *, archived: bool = False) -> Record:
        """A record by id, or by a unique property's value (a contact also by ``email``,
        any case: "you can retrieve contacts by their email ... using idProperty=email",
        https://developers.hubspot.com/docs/guides/api/crm/objects/contacts)."""
        if id_property == "email" and self.emails is not None:
            owner = self.email_owner(value)
            if owner is None:
                raise StoreError(404, "OBJECT_NOT_FOUND", "resource not found", {"id": [value]})
            return self.get(owner, archived=archived)
        if id_property and id_property != "hs_object_id":
            if id_property not in self.unique:
                raise StoreError(
                    400,
                    "VALIDATION_ERROR",
                    f"Property {id_property} is not a unique property of {self.object_type}",
                )
            rec_id = self.unique[id_property].get(value)
            if rec_id is None:
                raise StoreError(404, "OBJECT_NOT_FOUND", "resource not found", {"id": [value]})
            return self.get(rec_id, archived=archived)
        try:
            rec_id = int(value)
        except ValueError:
            raise StoreError(
                404, "OBJECT_NOT_FOUND", "resource not found", {"id": [value]}
            ) from None
        return self.get(rec_id, archived=archived)

    def set_property(self, definition: tuple[str, str, str, str, bool], present: bool) -> None:
        """Create (``present``) or delete a custom property; deleting it drops its values,
        as HubSpot does when a property is deleted."""
        name = definition[0]
        if present:
            self.properties.setdefault(name, PropertyDef(*definition))
            return
        if self.properties.pop(name, None) is not None:
            for rec in self.records.values():
                rec.props.pop(name, None)

    def check_properties(self, props: dict[str, Any]) -> Props:
        """Writable property values as HubSpot stores them (text; "" clears)."""
        clean: Props = {}
        bad = [name for name in props if name not in self.properties]
        if bad:
            raise StoreError(
                400,
                "VALIDATION_ERROR",
                "Property values were not valid: "
                + ", ".join(f'Property "{n}" does not exist' for n in bad),
                {"propertyName": bad},
                "PROPERTY_DOESNT_EXIST",
            )
        for name, value in props.items():
            if name in READ_ONLY:
                raise StoreError(
                    400,
                    "VALIDATION_ERROR",
                    f'Property values were not valid: "{name}" is a read only property',
                    {"propertyName": [name]},
                    "READ_ONLY_VALUE",
                )
            if value is None:
                clean[name] = ""
            elif isinstance(value, bool):
                clean[name] = "true" if value else "false"
            else:
                clean[name] = str(value)
        return clean

    def check_unique(self, props: Props, rec_id: int | None) -> None:
        for name, values in self.unique.items():
            value = props.get(name)
            if value:
                owner = values.get(value)
                if owner is not None and owner != rec_id:
                    raise StoreError(
                        409,
                        "CONFLICT",
                        f'A {SINGULAR[self.object_type]} with the unique property "{name}" value '
                        f'"{value}" already exists (id {owner})',
                        {"id": [str(owner)], "propertyName": [name]},
                        "DUPLICATE_VALUE",
                    )

    def _set_unique(self, rec: Record, before: Props) -> None:
        for name, values in self.unique.items():
            old, new = before.get(name), rec.props.get(name)
            if old != new:
                if old and values.get(old) == rec.id:
                    del values[old]
                if new:
                    values[new] = rec.id

    # -- changes -------------------------------------------------------------------------

    def create(self, props: Props, ms: int) -> Record:
        self.check_unique(props, None)
        rec_id = self.next_id
        self.next_id += 1
        rec = Record(rec_id, {}, ms, ms)
        rec.props.update(props)
        rec.props["hs_object_id"] = str(rec_id)
        rec.props["createdate"] = iso(ms)
        if "hs_createdate" in self.properties:
            rec.props["hs_createdate"] = iso(ms)
        self.stamp(rec, ms)
        self.records[rec_id] = rec
        self.active.append(rec_id)
        bisect.insort(self.index, (ms, rec_id))
        self._set_unique(rec, {})
        self._email_index(rec, True)
        return rec

    def update(self, rec: Record, props: Props, ms: int) -> dict[str, str | None]:
        """Apply ``props``; the properties that changed (name -> new value)."""
        self.check_unique(props, rec.id)
        changed = {k: v for k, v in props.items() if (rec.props.get(k) or "") != (v or "")}
        before = dict(rec.props)
        if "email" in props and rec.archived_ms is None:
            self._email_index(rec, False)
        rec.props.update(props)
        if "email" in props and rec.archived_ms is None:
            self._email_index(rec, True)
        self._set_unique(rec, before)
        self._index_remove(rec)
        self.stamp(rec, ms)
        self._index_add(rec)
        return changed

    def archive(self, rec: Record, ms: int, merged_into: int | None = None) -> None:
        if rec.archived_ms is not None:
            return
        self._index_remove(rec)
        self._remove_sorted(self.active, rec.id)
        bisect.insort(self.archived, rec.id)
        self._email_index(rec, False)
        rec.archived_ms = ms
        rec.merged_into = merged_into
        for name, values in self.unique.items():
            value = rec.props.get(name)
            if value and values.get(value) == rec.id:
                del values[value]

    def restore(self, rec: Record, ms: int) -> None:
        if rec.archived_ms is None:
            return
        self.check_unique(rec.props, rec.id)
        self._remove_sorted(self.archived, rec.id)
        bisect.insort(self.active, rec.id)
        rec.archived_ms = None
        rec.merged_into = None
        self._set_unique(rec, {})
        self._email_index(rec, True)
        self.stamp(rec, ms)
        self._index_add(rec)

    def touch(self, ids: Iterable[int], ms: int) -> int:
        count = 0
        searchable = self.searchable_from()
        for rec_id in ids:
            rec = self.records.get(rec_id)
            if rec is None or rec.archived_ms is not None:
                continue
            self.stamp(rec, ms, searchable)
            count += 1
        self.index = sorted((self.records[i].modified_ms, i) for i in self.active)
        return count

    # -- reading -------------------------------------------------------------------------

    def to_json(
        self,
        rec: Record,
        props: list[str] | None,
        associations: list[str] | None = None,
        other: ObjectStore | None = None,
    ) -> dict[str, Any]:
        names = props if props else self.default_props
        out_props: dict[str, str | None] = {}
        rp = rec.props
        for name in names:
            if name in self.properties:
                out_props[name] = rp.get(name)
        out_props["hs_object_id"] = rp["hs_object_id"]
        out_props["createdate"] = rp["createdate"]
        out_props[self.modified_props[0]] = rp[self.modified_props[0]]
        result: dict[str, Any] = {
            "id": str(rec.id),
            "properties": out_props,
            "createdAt": rp["createdate"],
            "updatedAt": rp[self.modified_props[0]],
            "archived": rec.archived_ms is not None,
        }
        if rec.archived_ms is not None:
            result["archivedAt"] = iso(rec.archived_ms)
        if associations and other is not None:
            wanted = {a.lower() for a in associations}
            if other.object_type in wanted or SINGULAR[other.object_type] in wanted:
                links = [i for i in rec.links if i in other.records]
                if links:
                    kind = f"{SINGULAR[self.object_type]}_to_{SINGULAR[other.object_type]}"
                    # each association is unlabeled, and the primary one (a contact's
                    # primary company) is listed again under the plain type
                    items: list[dict[str, str]] = []
                    for i in links:
                        if self.is_primary(rec, other.records[i]):
                            items.append({"id": str(i), "type": kind})
                        items.append({"id": str(i), "type": f"{kind}_unlabeled"})
                    result["associations"] = {other.object_type: {"results": items}}
        return result

    def is_primary(self, rec: Record, linked: Record) -> bool:
        """Whether the association of ``rec`` and ``linked`` is the contact's primary
        company (HubSpot-defined types 1 and 2; the others are unlabeled, 279 and 280)."""
        contact, company = (rec, linked) if self.object_type == "contacts" else (linked, rec)
        return bool(contact.links) and contact.links[0] == company.id

    def page(
        self, after: str | None, limit: int, archived: bool
    ) -> tuple[list[Record], str | None]:
        ids = self.archived if archived else self.active
        start = 0
        if after:
            try:
                start = bisect.bisect_left(ids, int(after))
            except ValueError:
                raise StoreError(
                    400, "VALIDATION_ERROR", f"Invalid paging token {after!r}"
                ) from None
        chunk = ids[start : start + limit]
        nxt = str(ids[start + limit]) if start + limit < len(ids) else None
        return [self.records[i] for i in chunk], nxt


# -- search ------------------------------------------------------------------------------

SEARCH_CAP = 10_000
OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}
_NEG_INF = -(2**62)
_POS_INF = 2**62


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    word: list[str] = []
    for ch in text.casefold():
        if ch.isalnum() or ch in "@.-_":
            word.append(ch)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def _token_match(value: str | None, needle: str) -> bool:
    if not value:
        return False
    import fnmatch

    needle = needle.casefold()
    if "*" in needle:
        return any(fnmatch.fnmatchcase(t, needle) for t in _tokens(value)) or fnmatch.fnmatchcase(
            value.casefold(), needle
        )
    return needle in _tokens(value) or value.casefold() == needle


class Filter:
    def __init__(self, store: ObjectStore, raw: dict[str, Any]) -> None:
        self.prop = str(raw.get("propertyName", ""))
        self.op = str(raw.get("operator", "EQ"))
        if self.op not in OPERATORS:
            raise StoreError(400, "VALIDATION_ERROR", f"Unknown filter operator {self.op!r}")
        if self.prop not in store.properties:
            raise StoreError(
                400,
                "VALIDATION_ERROR",
                f"There was a problem with the request: property {self.prop!r} does not exist",
            )
        pdef = store.properties[self.prop]
        self.kind = pdef.type  # string / number / datetime / enumeration
        self.is_modified = self.prop in store.modified_props
        self.value = raw.get("value")
        self.high = raw.get("highValue")
        self.values = list(raw.get("values") or [])
        if self.op in {"IN", "NOT_IN"} and not self.values:
            raise StoreError(400, "VALIDATION_ERROR", f"{self.op} needs 'values'")
        if self.op in {"IN", "NOT_IN"} and len(self.values) > 100:
            raise StoreError(400, "VALIDATION_ERROR", f"{self.op} takes at most 100 values")
        if self.op in {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN"} and self.value is None:
            raise StoreError(400, "VALIDATION_ERROR", f"filter on {self.prop} needs 'value'")
        self.num = self.kind in {"number", "datetime"}

    def conv(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "datetime":
            return parse_ms(value)
        if self.kind == "number":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise StoreError(
                    400, "VALIDATION_ERROR", f"{value!r} is not a number for {self.prop}"
                ) from None
        return str(value).casefold()

    def record_value(self, rec: Record) -> Any:
        if self.is_modified:
            return rec.modified_ms
        if self.prop == "hs_object_id":
            return float(rec.id)
        if self.prop == "createdate":
            return rec.created_ms
        raw = rec.props.get(self.prop)
        if raw is None or raw == "":
            return None
        return self.conv(raw)

    def test(self, rec: Record) -> bool:
        op = self.op
        if op in {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}:
            hit = _token_match(rec.props.get(self.prop), str(self.value or ""))
            return hit if op == "CONTAINS_TOKEN" else not hit
        v = self.record_value(rec)
        if op == "HAS_PROPERTY":
            return v is not None
        if op == "NOT_HAS_PROPERTY":
            return v is None
        if op in {"IN", "NOT_IN"}:
            hit = v is not None and v in {self.conv(x) for x in self.values}
            return hit if op == "IN" else not hit
        target = self.conv(self.value)
        if op == "NEQ":
            return bool(v != target)
        if v is None:
            return False
        if op == "EQ":
            return bool(v == target)
        if op == "LT":
            return bool(v < target)
        if op == "LTE":
            return bool(v <= target)
        if op == "GT":
            return bool(v > target)
        if op == "GTE":
            return bool(v >= target)
        # BETWEEN
        return bool(target <= v <= self.conv(self.high))


@dataclass
class _Plan:
    lo: int
    hi: int
    residual: list[Filter]
    single_ms: int | None  # the one modification ms when the group pins it with EQ


def _plan(store: ObjectStore, filters: list[Filter]) -> _Plan | None:
    """Bisect bounds on the (modified_ms, id) index for one AND-group, if it has any."""
    lo_ms, hi_ms = _NEG_INF, _POS_INF  # inclusive bounds
    used: list[Filter] = []
    for f in filters:
        if not f.is_modified or f.op not in {"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"}:
            continue
        v = parse_ms(f.value)
        assert v is not None
        if f.op == "EQ":
            lo_ms, hi_ms = max(lo_ms, v), min(hi_ms, v)
        elif f.op == "GT":
            lo_ms = max(lo_ms, v + 1)
        elif f.op == "GTE":
            lo_ms = max(lo_ms, v)
        elif f.op == "LT":
            hi_ms = min(hi_ms, v - 1)
        elif f.op == "LTE":
            hi_ms = min(hi_ms, v)
        else:
            h = parse_ms(f.high)
            assert h is not None
            lo_ms, hi_ms = max(lo_ms, v), min(hi_ms, h)
        used.append(f)
    if not used:
        return None
    residual = [f for f in filters if f not in used]
    lo_key: tuple[int, int] = (lo_ms, _NEG_INF)
    hi_key: tuple[int, int] = (hi_ms, _POS_INF)
    single = lo_ms if lo_ms == hi_ms else None
    if single is not None:
        # refine on the id within one millisecond: EQ T AND hs_object_id GT/GTE/LT/LTE L
        for f in list(residual):
            if f.prop != "hs_object_id" or f.op not in {"GT", "GTE", "LT", "LTE"}:
                continue
            v = int(float(str(f.value)))
            if f.op == "GT":
                lo_key = max(lo_key, (single, v + 1))
            elif f.op == "GTE":
                lo_key = max(lo_key, (single, v))
            elif f.op == "LT":
                hi_key = min(hi_key, (single, v - 1))
            else:
                hi_key = min(hi_key, (single, v))
            residual.remove(f)
    lo = bisect.bisect_left(store.index, lo_key)
    hi = bisect.bisect_right(store.index, hi_key)
    return _Plan(lo, max(lo, hi), residual, single)


def search(store: ObjectStore, body: dict[str, Any]) -> dict[str, Any]:
    """The ``/search`` answer (without serialisation of results: returns records)."""
    groups_raw = body.get("filterGroups") or []
    # "a maximum of five filterGroups with up to six filters in each", 18 in all (the search
    # guide, https://developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm;
    # stricter than the August 2024 changelog's 10 a group and 25 in all: the guide wins)
    if len(groups_raw) > 5:
        raise StoreError(400, "VALIDATION_ERROR", "Too many filter groups: at most 5 are allowed")
    total_filters = 0
    groups: list[list[Filter]] = []
    for g in groups_raw:
        raw_filters = g.get("filters") or []
        if len(raw_filters) > 6:
            raise StoreError(400, "VALIDATION_ERROR", "Too many filters in a group: at most 6")
        total_filters += len(raw_filters)
        groups.append([Filter(store, f) for f in raw_filters])
    if total_filters > 18:
        raise StoreError(400, "VALIDATION_ERROR", "Too many filters: at most 18 in all groups")
    limit = int(body.get("limit") or 10)
    if limit > 200 or limit < 1:
        raise StoreError(400, "VALIDATION_ERROR", "limit must be between 1 and 200")
    try:
        offset = int(body.get("after") or 0)
    except ValueError:
        raise StoreError(400, "VALIDATION_ERROR", "after must be a number") from None
    if offset >= SEARCH_CAP:
        raise StoreError(
            400,
            "VALIDATION_ERROR",
            f"There was a problem with the request. Cannot page beyond {SEARCH_CAP} results.",
        )
    sort_prop, descending = "hs_object_id", False
    sorts = body.get("sorts") or []
    if len(sorts) > 1:
        raise StoreError(400, "VALIDATION_ERROR", "Only one sort is allowed")
    if sorts:
        s = sorts[0]
        if isinstance(s, str):
            descending = s.startswith("-")
            sort_prop = s.lstrip("-")
        else:
            sort_prop = str(s.get("propertyName", "hs_object_id"))
            descending = str(s.get("direction", "ASCENDING")).upper().startswith("DESC")
    if sort_prop not in store.properties:
        raise StoreError(400, "VALIDATION_ERROR", f"Unknown sort property {sort_prop!r}")

    records = store.records
    # a write the index does not have yet is left out (the ``search_index_delay_seconds``
    # fault); checked record by record only while one may be pending
    now = int(time.time() * 1000)
    indexing = store.search_pending_ms > now

    def in_index(rec: Record) -> bool:
        return rec.searchable_ms <= now

    plans = [_plan(store, g) for g in groups] if groups else []
    ordered_by_key = False
    if plans and all(p is not None for p in plans):
        real = [p for p in plans if p is not None]
        real.sort(key=lambda p: p.lo)
        disjoint = all(a.hi <= b.lo for a, b in itertools.pairwise(real))
        one_ms = {p.single_ms for p in real}
        if disjoint and (
            sort_prop in store.modified_props
            or (sort_prop == "hs_object_id" and len(one_ms) == 1 and None not in one_ms)
        ):
            ordered_by_key = True
    if ordered_by_key:
        real = sorted((p for p in plans if p is not None), key=lambda p: p.lo)
        if descending:
            real.reverse()
        total = 0
        for p in real:
            if p.residual or indexing:
                total += sum(
                    1
                    for _, i in store.index[p.lo : p.hi]
                    if in_index(records[i]) and all(f.test(records[i]) for f in p.residual)
                )
            else:
                total += p.hi - p.lo

        def keys() -> Iterator[int]:
            for p in real:
                rng = store.index[p.lo : p.hi]
                if descending:
                    rng.reverse()
                for _, i in rng:
                    if (not p.residual and not indexing) or (
                        in_index(records[i]) and all(f.test(records[i]) for f in p.residual)
                    ):
                        yield i

        page: list[Record] = []
        want = min(offset + limit, SEARCH_CAP)
        for n, i in enumerate(keys()):
            if n >= want:
                break
            if n >= offset:
                page.append(records[i])
    else:
        matches = [
            records[i]
            for i in store.active
            if (not indexing or in_index(records[i]))
            and (not groups or any(all(f.test(records[i]) for f in g) for g in groups))
        ]
        if sort_prop != "hs_object_id" or descending:
            sf = Filter(store, {"propertyName": sort_prop, "operator": "HAS_PROPERTY"})

            def sort_key(rec: Record) -> tuple[int, Any, int]:
                v = sf.record_value(rec)
                return (1 if v is None else 0, v if v is not None else 0, rec.id)

            matches.sort(key=sort_key, reverse=descending)
        total = len(matches)
        page = matches[offset : min(offset + limit, SEARCH_CAP)]
    nxt = str(offset + limit) if offset + limit < total else None
    return {"total": total, "records": page, "after": nxt}


def now_iso() -> str:
    return iso(int(time.time() * 1000))


def company_store(*, address3: bool = False) -> ObjectStore:
    """The companies, with the custom property ``address3`` only when asked."""
    return ObjectStore(
        "companies",
        1_000_001,
        [*_COMPANY_PROPERTIES, *([ADDRESS3] if address3 else [])],
        ("hs_lastmodifieddate",),
        ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    )


def contact_store() -> ObjectStore:
    return ObjectStore(
        "contacts",
        50_000_001,
        _CONTACT_PROPERTIES,
        ("lastmodifieddate", "hs_lastmodifieddate"),
        ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    )
