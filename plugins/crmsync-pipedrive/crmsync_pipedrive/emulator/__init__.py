"""A local emulator of the Pipedrive REST API, over real HTTP, for tests and trials.

    with PipedriveEmulator() as pd:
        pd.url                      # http://127.0.0.1:PORT  (the company domain URL)
        pd.api_token                # the token it accepts
        ids = pd.seed(10)           # organizations with persons; their ids (as text)

The endpoints and their documented behaviour are listed in ``api.py``. The Python methods
(``create``, ``edit``, ``delete``, ``restore``, ``merge``, ``touch``) act as a Pipedrive user
in the web app would; they are not API calls and are not counted by :meth:`api_calls`.
Faults (:meth:`set_faults`): ``rate_limit_next`` (429s, with ``Retry-After`` when
``retry_after`` is set), ``server_error_next`` (``server_error_status``), ``hang_next``
(``hang_seconds``), ``record_errors`` ({organization id or crmsync id: "validation"}),
``expired_token`` (every call 401), ``burst_limit`` (requests per 2-second window),
``reset_seconds`` (what a 429's ``x-ratelimit-reset`` says), ``daily_left`` (requests
left in the day: past them every call is 429 with ``x-daily-requests-left: 0``).
"""

from __future__ import annotations

import base64
import json
import queue
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crmsync_pipedrive.emulator.api import ApiError, dispatch
from crmsync_pipedrive.emulator.store import (
    ADDRESS_PARTS,
    Organization,
    Person,
    Store,
    Webhook,
)

#: the custom organization fields every emulated company has (keys as Pipedrive makes them)
CRMSYNC_ID_KEY = "3c1e5a0b6f2d4e8a9b7c1d0e2f3a4b5c6d7e8f90"
PHONE_KEY = "7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b"
EMAIL_KEY = "b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0"
WINDOW_SECONDS = 2
#: requests a day (UTC) the emulated plan allows
DAILY_BUDGET = 10_000


@dataclass
class Faults:
    rate_limit_next: int = 0
    retry_after: float | None = None
    server_error_next: int = 0
    server_error_status: int = 500
    hang_next: int = 0
    hang_seconds: float = 0.0
    record_errors: dict[str, str] = field(default_factory=dict)
    expired_token: bool = False
    burst_limit: int = 80
    #: what a 429 says in x-ratelimit-reset (None: the seconds left in the window)
    reset_seconds: float | None = None
    #: requests left in the day's budget (None: the default budget, never spent here)
    daily_left: int | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        # kept-alive requests must not wait for Nagle's algorithm (~40 ms each)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


class PipedriveEmulator:
    """The emulated company: its API on a local port, and a user's hands on its data."""

    def __init__(self, api_token: str = "emulator-api-token", port: int = 0) -> None:
        self.api_token = api_token
        self.store = Store()
        self.faults = Faults()
        self._requests = 0
        self._window: tuple[int, int] = (0, 0)  # (window start, requests in it)
        self._lock = threading.Lock()
        self._outbox: queue.Queue[tuple[Webhook, dict[str, Any]]] = queue.Queue()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._deliver_forever, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- life cycle
    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._outbox.put((Webhook(0, "", "", "", None, None), {}))  # wakes the sender to stop

    def __enter__(self) -> PipedriveEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """An empty company: no records, no webhooks, no faults, no requests counted."""
        with self.store.lock:
            self.store = Store()  # a new company: its clock starts from the real time
        self.faults = Faults()
        with self._lock:
            self._requests = 0
            self._window = (0, 0)

    def set_faults(self, **faults: Any) -> None:
        for name, value in faults.items():
            if not hasattr(self.faults, name):
                raise ValueError(f"unknown fault {name!r}")
            setattr(self.faults, name, value)

    def api_calls(self) -> int:
        """API requests served (refused ones included) since the last reset."""
        with self._lock:
            return self._requests

    # -- the describe
    def organization_fields(self) -> list[dict[str, Any]]:
        def field_(n: int, key: str, name: str, kind: str, custom: bool) -> dict[str, Any]:
            return {
                "id": n,
                "key": key,
                "name": name,
                "field_type": kind,
                "edit_flag": custom,
                "active_flag": True,
                "mandatory_flag": key == "name",
                "bulk_edit_allowed": True,
            }

        return [
            field_(1, "name", "Name", "varchar", False),
            field_(2, "owner_id", "Owner", "user", False),
            field_(3, "address", "Address", "address", False),
            field_(4, "visible_to", "Visible to", "visible_to", False),
            field_(5, "update_time", "Update time", "date", False),
            field_(6, CRMSYNC_ID_KEY, "crmsync id", "varchar", True),
            field_(7, PHONE_KEY, "Phone", "phone", True),
            field_(8, EMAIL_KEY, "Billing e-mail", "varchar", True),
        ]

    # -- a user's hands (the web app), not API calls
    def create(
        self,
        name: str,
        address: dict[str, str | None] | None = None,
        custom: dict[str, Any] | None = None,
    ) -> str:
        with self.store.lock:
            now = self.store.now()
            org = Organization(
                id=self.store.new_id(),
                name=name,
                address=_clean(address or {}),
                custom=_clean(custom or {}),
                add_time=now,
                update_time=now,
            )
            self.store.organizations[org.id] = org
            self._notify("added", "organization", org.v1(), None)
            return str(org.id)

    def edit(
        self,
        org_id: str,
        name: str | None = None,
        address: dict[str, str | None] | None = None,
        custom: dict[str, Any] | None = None,
    ) -> None:
        """Change fields as a user would; address parts not named keep their value."""
        with self.store.lock:
            org = self.store.organizations[int(org_id)]
            previous = org.v1()
            if name is not None:
                org.name = name
            org.address = _clean({**org.address, **(address or {})})
            org.custom = _clean({**org.custom, **(custom or {})})
            org.update_time = self.store.now()
            self._notify("updated", "organization", org.v1(), previous)

    def read(self, org_id: str) -> Organization:
        with self.store.lock:
            return self.store.organizations[int(org_id)]

    def delete(self, org_id: str) -> None:
        with self.store.lock:
            org = self.store.organizations[int(org_id)]
            previous = org.v1()
            org.active = False
            org.update_time = self.store.now()
            self._notify("deleted", "organization", None, previous)

    def restore(self, org_id: str) -> None:
        """Restore a deleted organization (possible for 30 days in the web app)."""
        with self.store.lock:
            org = self.store.organizations[int(org_id)]
            org.active = True
            org.update_time = self.store.now()
            self._notify("updated", "organization", org.v1(), None)

    def merge(self, survivor_id: str, loser_id: str) -> str:
        """Merge ``loser_id`` into ``survivor_id`` as the merge endpoint does; the survivor."""
        with self.store.lock:
            survivor = self.store.organizations[int(survivor_id)]
            loser = self.store.organizations[int(loser_id)]
            previous = loser.v1()
            now = self.store.now()
            # the survivor's values win; its empty fields take the other's
            for part, value in loser.address.items():
                survivor.address.setdefault(part, value)
            for key, value in loser.custom.items():
                survivor.custom.setdefault(key, value)
            survivor.update_time = now
            loser.active = False
            loser.update_time = now
            for person in self.store.persons.values():
                if person.org_id == loser.id:
                    person.org_id = survivor.id
                    person.update_time = now
            survivor.people_count += loser.people_count
            loser.people_count = 0
            # only the merge's answer and its webhook name the merged-away organization
            current = {**survivor.v1(), "merge_what_id": loser.id}
            self._notify("merged", "organization", current, previous)
            return str(survivor.id)

    def touch(self, org_ids: list[str], seconds: int) -> None:
        """Stamp the organizations' ``update_time`` with ``seconds`` (automation)."""
        with self.store.lock:
            at = self.store.stamp_at(seconds)
            for org_id in org_ids:
                self.store.organizations[int(org_id)].update_time = at

    def add_person(self, name: str, email: str | None, org_id: str | None) -> str:
        with self.store.lock:
            now = self.store.now()
            person = Person(
                id=self.store.new_id(),
                name=name,
                emails=[email] if email else [],
                org_id=int(org_id) if org_id else None,
                add_time=now,
                update_time=now,
            )
            self.store.persons[person.id] = person
            if person.org_id in self.store.organizations:
                self.store.organizations[person.org_id].people_count += 1
            self._notify("added", "person", self.person_v1(person), None)
            return str(person.id)

    def seed(self, count: int, persons_each: int = 2) -> list[str]:
        """``count`` organizations with addresses and ``persons_each`` persons each."""
        ids = []
        for n in range(count):
            org_id = self.create(
                f"Seeded Company {n:05d}",
                {
                    "route": f"{n} Market Street",
                    "locality": "Springfield",
                    "admin_area_level_1": "IL",
                    "postal_code": f"{62700 + n % 100}",
                    "country": "United States",
                },
            )
            for p in range(persons_each):
                self.add_person(f"Person {n}-{p}", f"person{n}.{p}@example.com", org_id)
            ids.append(org_id)
        return ids

    def person_v1(self, person: Person) -> dict[str, Any]:
        org = self.store.organizations.get(person.org_id or -1)
        return person.v1(org.name if org else None)

    # -- API writes (v2 bodies)
    def create_v2(self, body: dict[str, Any]) -> Organization:
        with self.store.lock:
            org_id = self.create(str(body["name"]), body.get("address"), body.get("custom_fields"))
            return self.store.organizations[int(org_id)]

    def update_v2(self, org: Organization, body: dict[str, Any]) -> None:
        with self.store.lock:
            previous = org.v1()
            if "name" in body:
                org.name = body["name"]
            if "address" in body:
                org.address = _clean(dict(body["address"] or {}))  # one field: set whole
            if body.get("custom_fields"):
                org.custom = _clean({**org.custom, **body["custom_fields"]})
            org.update_time = self.store.now()
            self._notify("updated", "organization", org.v1(), previous)

    def check_record_error(self, org: Organization | None, body: dict[str, Any]) -> None:
        """A write refused for this one record (``record_errors`` fault)."""
        keys = [str(org.id)] if org else []
        keys.append(str((body.get("custom_fields") or {}).get(CRMSYNC_ID_KEY) or ""))
        for key in keys:
            if key and self.faults.record_errors.get(key) == "validation":
                raise ApiError(400, f"Organization {key}: Address is not valid (injected)")

    # -- webhooks
    def add_webhook(self, url: str, action: str, obj: str, user: Any, password: Any) -> Webhook:
        with self.store.lock:
            hook = Webhook(
                self.store.new_id(),
                url,
                action,
                obj,
                str(user) if user else None,
                str(password) if password else None,
            )
            self.store.webhooks[hook.id] = hook
            return hook

    def flush_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook so far was delivered (or given up on)."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._pending_lock.wait(left)
        return True

    def _notify(self, action: str, obj: str, current: dict[str, Any] | None, previous: Any) -> None:
        hooks = [h for h in self.store.webhooks.values() if h.wants(action, obj)]
        now = time.time()
        for hook in hooks:
            record_id = (current or previous or {}).get("id")
            payload = {
                "v": 1,
                "matches_filters": {"current": []},
                "meta": {
                    "v": 1,
                    "action": action,
                    "object": obj,
                    "id": record_id,
                    "company_id": 1,
                    "user_id": 1,
                    "host": "emulator.pipedrive.com",
                    "timestamp": int(now),
                    "timestamp_micro": int(now * 1_000_000),
                    "permitted_user_ids": [1],
                    "trans_pending": False,
                    "is_bulk_update": False,
                    "webhook_id": str(hook.id),
                },
                "current": current,
                "previous": previous,
                "retry": 0,
                "event": f"{action}.{obj}",
            }
            with self._pending_lock:
                self._pending += 1
            self._outbox.put((hook, payload))

    def _deliver_forever(self) -> None:
        while True:
            hook, payload = self._outbox.get()
            if not hook.subscription_url:
                return
            try:
                self._deliver(hook, payload)
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    self._pending_lock.notify_all()

    def _deliver(self, hook: Webhook, payload: dict[str, Any]) -> None:
        """POST with HTTP basic auth; a refused delivery is retried twice (Pipedrive retries
        for a while, then gives up)."""
        for attempt in range(3):
            payload["retry"] = attempt
            request = urllib.request.Request(
                hook.subscription_url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            if hook.http_auth_user is not None:
                pair = f"{hook.http_auth_user}:{hook.http_auth_password or ''}".encode()
                request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    if 200 <= answer.status < 300:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)

    # -- the HTTP side
    def _admit(self, headers: Any, target: str) -> dict[str, str]:
        """Count the request, check auth and faults; the rate-limit headers to send."""
        with self._lock:
            self._requests += 1
            now = int(time.monotonic())
            window_start = now - now % WINDOW_SECONDS
            start, used = self._window
            used = used + 1 if start == window_start else 1
            self._window = (window_start, used)
            limit = self.faults.burst_limit
            reset = max(1, window_start + WINDOW_SECONDS - now)
            if self.faults.daily_left is not None:
                left = self.faults.daily_left
                self.faults.daily_left = max(0, left - 1)
            else:
                left = max(1, DAILY_BUDGET - self._requests)
            limits = {
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": str(max(0, limit - used)),
                "x-ratelimit-reset": str(reset),
                "x-daily-requests-left": str(max(0, left - 1)),
            }
            if left <= 0:
                raise ApiError(429, "Daily request limit exceeded", limits)
            if self.faults.rate_limit_next > 0 or used > limit:
                if self.faults.rate_limit_next > 0:
                    self.faults.rate_limit_next -= 1
                limits["x-ratelimit-remaining"] = "0"
                if self.faults.reset_seconds is not None:
                    limits["x-ratelimit-reset"] = str(self.faults.reset_seconds)
                if self.faults.retry_after is not None:
                    limits["Retry-After"] = str(self.faults.retry_after)
                raise ApiError(429, "Request over limit", limits)
            if self.faults.server_error_next > 0:
                self.faults.server_error_next -= 1
                raise ApiError(self.faults.server_error_status, "Internal server error (injected)")
            hang = 0.0
            if self.faults.hang_next > 0:
                self.faults.hang_next -= 1
                hang = self.faults.hang_seconds
        if hang:
            time.sleep(hang)
        token = headers.get("x-api-token") or _query_token(target)
        if (
            self.faults.expired_token
            or not token
            or not secrets.compare_digest(token, self.api_token)
        ):
            raise ApiError(401, "unauthorized access", limits)
        return limits

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                try:
                    headers = emulator._admit(self.headers, self.path)
                    status, answer = dispatch(emulator, self.command, self.path, body)
                except ApiError as error:
                    status, answer = error.status, error.body()
                    headers = {**headers, **error.headers}
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                return None

        return Handler


def _query_token(target: str) -> str | None:
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(target).query).get("api_token")
    return values[-1] if values else None


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    """Pipedrive keeps an emptied field as null: drop empty values."""
    return {k: v for k, v in values.items() if v not in (None, "")}


__all__ = [
    "ADDRESS_PARTS",
    "CRMSYNC_ID_KEY",
    "EMAIL_KEY",
    "PHONE_KEY",
    "PipedriveEmulator",
]
