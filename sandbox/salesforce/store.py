"""The emulated org: records, sorted index, query cursors, writes with validation.

Every method expects the caller to hold :attr:`Org.lock` (the HTTP app and the control
methods both take it), so a request sees one consistent org.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce import soql
from sandbox.salesforce.errors import ApiError, RecordProblem
from sandbox.salesforce.ids import looks_like_id, make_id, to18
from sandbox.salesforce.schema import (
    ID_TYPES,
    TEXT_TYPES,
    FieldDef,
    ObjectDef,
    account_object,
    address_value,
    contact_object,
    format_ms,
)

Record = dict[str, Any]

INTEGRATION_USER = make_id("005", 1)
CRM_USER = make_id("005", 2)
SYSTEM_FIELDS = (
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "IsDeleted",
    "MasterRecordId",
)
#: how many query cursors stay open (Salesforce keeps a few per user; old ones expire)
MAX_CURSORS = 50


@dataclass
class Cursor:
    object_name: str
    fields: list[str]
    records: list[Record]


@dataclass
class RecordFault:
    code: str
    times: int | None = None  # None: every time
    message: str | None = None


_FAULT_MESSAGES = {
    "UNABLE_TO_LOCK_ROW": "unable to obtain exclusive access to this record or 1 records: {id}",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "Billing address is not valid for this account",
    "DUPLICATE_VALUE": "duplicate value found: {ext} duplicates value on record with id: {id}",
    "DUPLICATES_DETECTED": "Use one of these records?",
}


class Table:
    """One sObject's records, with the index sorted by (SystemModstamp, Id)."""

    def __init__(self, obj: ObjectDef) -> None:
        self.obj = obj
        self.by_id: dict[str, Record] = {}
        self.index: list[tuple[str, str]] = []
        self.counter = 0
        self.deleted_at: dict[str, int] = {}
        #: id -> (query fields and API version, the record's JSON in a query answer); a
        #: record's entry is dropped whenever it is saved, so pages are mostly joins of bytes
        self.json_cache: dict[str, tuple[tuple[str, ...], bytes]] = {}
        #: AccountId -> contact ids (Contacts only): deletes and merges cascade without a scan
        self.children: dict[str, set[str]] = {}
        self.ext_fields = [f.name for f in obj.fields.values() if f.external_id]
        #: external-ID field -> casefolded value -> ids
        self.ext_index: dict[str, dict[str, set[str]]] = {f: {} for f in self.ext_fields}

    def new_id(self) -> str:
        self.counter += 1
        return make_id(self.obj.key_prefix, self.counter)

    def put_index(self, rec: Record) -> None:
        bisect.insort(self.index, (rec["SystemModstamp"], rec["Id"]))

    def drop_index(self, rec: Record) -> None:
        key = (rec["SystemModstamp"], rec["Id"])
        i = bisect.bisect_left(self.index, key)
        if i < len(self.index) and self.index[i] == key:
            del self.index[i]

    def set_parent(self, rec: Record, parent: str | None) -> None:
        old = rec.get("AccountId")
        if old is not None:
            self.children.get(old, set()).discard(rec["Id"])
        if parent is not None:
            self.children.setdefault(parent, set()).add(rec["Id"])
        rec["AccountId"] = parent

    def child_records(self, parent: str) -> list[Record]:
        return [self.by_id[i] for i in sorted(self.children.get(parent, ()))]

    def set_ext(self, rec: Record, name: str, value: str | None) -> None:
        old = rec.get(name)
        if old is not None:
            ids = self.ext_index[name].get(old.casefold())
            if ids:
                ids.discard(rec["Id"])
        if value is not None:
            self.ext_index[name].setdefault(value.casefold(), set()).add(rec["Id"])

    def find_ext(self, name: str, value: str, include_deleted: bool = False) -> list[Record]:
        ids = self.ext_index.get(name, {}).get(value.casefold(), set())
        recs = [self.by_id[i] for i in sorted(ids)]
        return recs if include_deleted else [r for r in recs if not r["IsDeleted"]]

    def live(self, rec_id: str) -> Record | None:
        rec = self.by_id.get(to18(rec_id))
        return rec if rec is not None and not rec["IsDeleted"] else None


ChangeHook = Callable[[str, Record, str], None]


@dataclass
class Org:
    external_id_field: str = "crmsync_id__c"
    #: multi-currency on (Account.CurrencyIsoCode exists); off in a new org
    multi_currency: bool = False
    organization_id: str = field(default_factory=lambda: make_id("00D", 1))
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.objects = {
            "Account": account_object(self.external_id_field, multi_currency=self.multi_currency),
            "Contact": contact_object(),
        }
        self.tables = {name: Table(obj) for name, obj in self.objects.items()}
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        self.cursor_counter = 0
        self.frozen_ms: int | None = None
        self.last_ms = 0
        self.record_faults: dict[str, RecordFault] = {}
        self.on_change: list[ChangeHook] = []

    # -- clock ------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Never goes back; several records may share a millisecond, as in Salesforce."""
        now = self.frozen_ms if self.frozen_ms is not None else int(time.time() * 1000)
        self.last_ms = max(self.last_ms, now)
        return self.last_ms

    def reset(self) -> None:
        self.__post_init__()

    def table(self, name: str) -> Table:
        for key, table in self.tables.items():
            if key.lower() == name.lower():
                return table
        raise ApiError(404, "NOT_FOUND", f"The requested resource does not exist: {name}")

    # -- writes (shared by the API and the control methods) ---------------------------------
    def _stamp(self, rec: Record, user: str, *, created: bool = False) -> None:
        stamp = format_ms(self.now_ms())
        if created:
            rec["CreatedDate"] = stamp
            rec["CreatedById"] = user
        rec["LastModifiedDate"] = stamp
        rec["LastModifiedById"] = user
        rec["SystemModstamp"] = stamp

    def _touch(self, table: Table, rec: Record, user: str, source: str) -> None:
        table.json_cache.pop(rec["Id"], None)
        table.drop_index(rec)
        self._stamp(rec, user)
        table.put_index(rec)
        self._changed(table, rec, source)

    def _changed(self, table: Table, rec: Record, source: str) -> None:
        for hook in self.on_change:
            hook(table.obj.name, rec, source)

    def insert(self, table: Table, values: Record, user: str, source: str) -> Record:
        rec: Record = dict.fromkeys(table.obj.fields)
        rec["Id"] = table.new_id()
        rec["IsDeleted"] = False
        self._assign(table, rec, values)
        self._derive(table, rec)
        self._stamp(rec, user, created=True)
        table.by_id[rec["Id"]] = rec
        table.put_index(rec)
        self._changed(table, rec, source)
        return rec

    def update(self, table: Table, rec: Record, values: Record, user: str, source: str) -> None:
        self._assign(table, rec, values)
        self._derive(table, rec)
        self._touch(table, rec, user, source)

    @staticmethod
    def _assign(table: Table, rec: Record, values: Record) -> None:
        for name, value in values.items():
            if name in table.ext_index:
                table.set_ext(rec, name, value)
            if name == "AccountId":
                table.set_parent(rec, value)
            rec[name] = value

    def _derive(self, table: Table, rec: Record) -> None:
        if table.obj.name == "Account":
            for prefix in ("Billing", "Shipping"):
                rec[f"{prefix}Address"] = address_value(rec, prefix)
        if table.obj.name == "Contact":
            parts = [p for p in (rec.get("FirstName"), rec.get("LastName")) if p]
            rec["Name"] = " ".join(parts) or None

    def soft_delete(
        self, table: Table, rec: Record, user: str, source: str, master: str | None = None
    ) -> None:
        if rec["IsDeleted"]:
            raise RecordProblem("ENTITY_IS_DELETED", "entity is deleted")
        rec["IsDeleted"] = True
        rec["MasterRecordId"] = master
        table.deleted_at[rec["Id"]] = self.now_ms()
        self._touch(table, rec, user, source)
        if table.obj.name == "Account":
            # Deleting an account deletes its contacts too (they come back on undelete).
            contacts = self.tables["Contact"]
            for contact in contacts.child_records(rec["Id"]):
                if not contact["IsDeleted"]:
                    contact["IsDeleted"] = True
                    contacts.deleted_at[contact["Id"]] = self.now_ms()
                    self._touch(contacts, contact, user, source)

    def undelete(self, table: Table, rec: Record, user: str, source: str) -> None:
        if not rec["IsDeleted"]:
            raise RecordProblem("UNDELETE_FAILED", "Entity is not in the recycle bin")
        for name in table.ext_fields:
            value = rec.get(name)
            f = table.obj.fields[name]
            if value is not None and f.unique and table.find_ext(name, value):
                raise RecordProblem("DUPLICATE_VALUE", f"duplicate value found: {name}")
        rec["IsDeleted"] = False
        rec["MasterRecordId"] = None
        table.deleted_at.pop(rec["Id"], None)
        self._touch(table, rec, user, source)
        if table.obj.name == "Account":
            contacts = self.tables["Contact"]
            for contact in contacts.child_records(rec["Id"]):
                if contact["IsDeleted"] and contact["MasterRecordId"] is None:
                    contact["IsDeleted"] = False
                    contacts.deleted_at.pop(contact["Id"], None)
                    self._touch(contacts, contact, user, source)

    def merge(self, table: Table, winner: Record, loser: Record, user: str, source: str) -> None:
        if winner["Id"] == loser["Id"]:
            raise RecordProblem("INVALID_OPERATION", "cannot merge a record with itself")
        if table.obj.name == "Account":
            contacts = self.tables["Contact"]
            for contact in contacts.child_records(loser["Id"]):
                contacts.set_parent(contact, winner["Id"])
                self._touch(contacts, contact, user, source)
        self.soft_delete(table, loser, user, source, master=winner["Id"])
        # Salesforce does not cascade the loser's delete to the re-parented contacts.
        self._touch(table, winner, user, source)

    # -- validation of API input -------------------------------------------------------------
    def clean(
        self, table: Table, body: Record, *, create: bool, rec: Record | None = None
    ) -> Record:
        """Field values from a JSON body, checked as Salesforce checks them; raises
        :class:`RecordProblem` for the first problem."""
        values: Record = {}
        obj = table.obj
        for raw_name, raw in body.items():
            if raw_name == "attributes":
                continue
            f = obj.lookup(raw_name)
            if f is None:
                raise RecordProblem(
                    "INVALID_FIELD", f"No such column '{raw_name}' on sobject of type {obj.name}"
                )
            if f.name == "Id":
                continue  # the id travels in the body for collection updates; it is not a write
            if (create and not f.createable) or (not create and not f.updateable):
                raise RecordProblem(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your "
                    "profile or permission set.",
                    [f.name],
                )
            values[f.name] = self._value(f, raw)
        if create:
            for f in obj.fields.values():
                if f.createable and not f.nillable and values.get(f.name) is None:
                    raise RecordProblem(
                        "REQUIRED_FIELD_MISSING",
                        f"Required fields are missing: [{f.name}]",
                        [f.name],
                    )
        else:
            for name, value in values.items():
                if value is None and not obj.fields[name].nillable:
                    raise RecordProblem(
                        "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name]
                    )
        for name, value in values.items():
            f = obj.fields[name]
            if f.unique and value is not None:
                others = [
                    r for r in table.find_ext(name, value) if rec is None or r["Id"] != rec["Id"]
                ]
                if others:
                    raise RecordProblem(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {name} duplicates value on record with id: "
                        f"{others[0]['Id']}",
                        [name],
                    )
            if f.type == "reference" and value is not None:
                target = self.tables["Account"].live(value) if name == "AccountId" else None
                if target is None:
                    raise RecordProblem(
                        "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name]
                    )
                values[name] = target["Id"]
        return values

    def _value(self, f: FieldDef, raw: Any) -> Any:
        if raw is None:
            return None
        if f.type == "boolean":
            if not isinstance(raw, bool):
                raise RecordProblem(
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of boolean from VALUE_STRING value {raw}",
                    [f.name],
                )
            return raw
        if isinstance(raw, (dict, list)):
            raise RecordProblem(
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of string from START_OBJECT value",
                [f.name],
            )
        value = (
            raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else str(raw)
        )
        if value == "":
            return None  # Salesforce stores an empty text value as null
        if f.type in ID_TYPES:
            if not looks_like_id(value):
                raise RecordProblem(
                    "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
                )
            return to18(value)
        if f.type in TEXT_TYPES and f.length and len(value) > f.length:
            raise RecordProblem(
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {value[:40]}... (max length={f.length})",
                [f.name],
            )
        if f.type == "email" and (
            "@" not in value or " " in value or value.startswith("@") or value.endswith("@")
        ):
            raise RecordProblem(
                "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
            )
        return value

    def record_fault(self, keys: Iterable[str | None]) -> RecordProblem | None:
        """The injected per-record error for a record named by id, name or external id."""
        for key in keys:
            if key is None:
                continue
            fault = self.record_faults.get(key)
            if fault is None:
                continue
            if fault.times is not None:
                if fault.times <= 0:
                    continue
                fault.times -= 1
            message = fault.message or _FAULT_MESSAGES.get(fault.code, fault.code)
            return RecordProblem(fault.code, message.format(id=key, ext=self.external_id_field))
        return None

    def fault_keys(self, rec: Record | None, values: Record) -> list[str | None]:
        keys: list[str | None] = []
        if rec is not None:
            keys += [rec["Id"], rec.get("Name"), rec.get(self.external_id_field)]
        keys += [values.get("Name"), values.get(self.external_id_field)]
        keys.append(values.get("Email"))  # a contact is named by its e-mail
        return keys

    # -- queries ------------------------------------------------------------------------------
    def run_query(
        self, text: str, include_deleted: bool, *, whole_seconds: bool = False
    ) -> tuple[soql.Query, list[Record]]:
        try:
            query = soql.parse(text, self.objects, whole_seconds=whole_seconds)
        except soql.SoqlError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        table = self.tables[query.obj.name]
        order = [(o.field.name, o.descending, o.nulls_last) for o in query.order]
        by_index = order in (
            [],
            [("SystemModstamp", False, False)],
            [("SystemModstamp", False, False), ("Id", False, False)],
        )
        bound = query.lower_bound("SystemModstamp")
        if bound is not None or by_index:
            start = bisect.bisect_left(table.index, (bound, "")) if bound is not None else 0
            by_id = table.by_id
            candidates = [by_id[key[1]] for key in table.index[start:]]
        else:
            candidates = list(table.by_id.values())
        if not include_deleted:
            candidates = [r for r in candidates if not r["IsDeleted"]]
        pred = query.predicate()
        if pred is not None:
            candidates = [r for r in candidates if pred(r)]
        if not by_index:
            candidates = soql.sort_records(candidates, query.order)
        if query.offset:
            candidates = candidates[query.offset :]
        if query.limit is not None:
            candidates = candidates[: query.limit]
        return query, candidates

    def open_cursor(self, cursor: Cursor) -> str:
        self.cursor_counter += 1
        locator = make_id("01g", self.cursor_counter)
        self.cursors[locator] = cursor
        while len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return locator

    def get_cursor(self, locator: str) -> Cursor:
        cursor = self.cursors.get(locator)
        if cursor is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self.cursors.move_to_end(locator)
        return cursor
