"""The emulator's data: organizations, persons and webhook subscriptions, in memory.

Times are whole seconds (Pipedrive's ``update_time`` is ``YYYY-MM-DD HH:MM:SS``, UTC) from a
clock that never goes back, even after a record was stamped ahead of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: the parts of Pipedrive's address field (API v2 ``address`` object, v1 ``address_*``)
ADDRESS_PARTS = (
    "subpremise",
    "street_number",
    "route",
    "sublocality",
    "locality",
    "admin_area_level_1",
    "admin_area_level_2",
    "country",
    "postal_code",
)


def stamp(seconds: int) -> str:
    """Pipedrive's v1 time format."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(seconds: int) -> str:
    """Pipedrive's v2 time format (RFC 3339)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


@dataclass
class Organization:
    id: int
    name: str
    address: dict[str, str | None]
    custom: dict[str, Any]
    add_time: int
    update_time: int
    active: bool = True
    people_count: int = 0

    def address_value(self) -> str | None:
        parts = [self.address.get(p) for p in ("route", "street_number", "subpremise")]
        parts += [self.address.get(p) for p in ("postal_code", "locality", "country")]
        text = ", ".join(p for p in parts if p)
        return self.address.get("value") or text or None

    def v1(self) -> dict[str, Any]:
        """As API v1 answers (GET /v1/organizations, recents, webhooks v1)."""
        record: dict[str, Any] = {
            "id": self.id,
            "company_id": 1,
            "owner_id": {"id": 1, "name": "Emulator Admin", "value": 1},
            "name": self.name,
            "active_flag": self.active,
            "first_char": self.name[:1].lower(),
            "add_time": stamp(self.add_time),
            "update_time": stamp(self.update_time),
            "visible_to": "3",
            "country_code": None,
            "address": self.address_value(),
            "address_formatted_address": self.address_value(),
            "owner_name": "Emulator Admin",
            "people_count": self.people_count,
            "cc_email": "emulator@pipedrivemail.com",
        }
        for part in ADDRESS_PARTS:
            record[f"address_{part}"] = self.address.get(part)
        record.update(self.custom)
        return record

    def v2(self) -> dict[str, Any]:
        """As API v2 answers (POST/PATCH /api/v2/organizations)."""
        address: dict[str, Any] = {p: self.address.get(p) for p in ADDRESS_PARTS}
        address["value"] = self.address_value()
        address["formatted_address"] = self.address_value()
        return {
            "id": self.id,
            "name": self.name,
            "owner_id": 1,
            "add_time": iso(self.add_time),
            "update_time": iso(self.update_time),
            "visible_to": 3,
            "is_deleted": not self.active,
            "address": address,
            "custom_fields": dict(self.custom),
        }


@dataclass
class Person:
    id: int
    name: str
    emails: list[str]
    org_id: int | None
    add_time: int
    update_time: int
    active: bool = True

    def v1(self, org_name: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "company_id": 1,
            "name": self.name,
            "active_flag": self.active,
            "email": [
                {"value": e, "primary": n == 0, "label": "work"} for n, e in enumerate(self.emails)
            ]
            or [{"value": "", "primary": True}],
            "org_id": (
                {"name": org_name, "value": self.org_id, "active_flag": True}
                if self.org_id is not None
                else None
            ),
            "add_time": stamp(self.add_time),
            "update_time": stamp(self.update_time),
        }


@dataclass
class Webhook:
    id: int
    subscription_url: str
    event_action: str
    event_object: str
    http_auth_user: str | None
    http_auth_password: str | None

    def wants(self, action: str, obj: str) -> bool:
        return self.event_action in ("*", action) and self.event_object in ("*", obj)

    def v1(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "company_id": 1,
            "owner_id": 1,
            "user_id": 1,
            "event_action": self.event_action,
            "event_object": self.event_object,
            "subscription_url": self.subscription_url,
            "is_active": 1,
            "version": "1.0",
            "http_auth_user": self.http_auth_user,
            "type": "general",
        }


@dataclass
class Store:
    """Everything the emulator holds; every method takes the lock."""

    organizations: dict[int, Organization] = field(default_factory=dict)
    persons: dict[int, Person] = field(default_factory=dict)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    next_id: int = 1
    clock_floor: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def now(self) -> int:
        """Whole seconds, never earlier than any stamp given so far."""
        self.clock_floor = max(self.clock_floor, int(time.time()))
        return self.clock_floor

    def stamp_at(self, seconds: int) -> int:
        self.clock_floor = max(self.clock_floor, seconds)
        return seconds
