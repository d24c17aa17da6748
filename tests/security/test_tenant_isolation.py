"""Tenant isolation: nothing of one organisation is readable or writable through another,
by any HTTP route, any CLI command or either webhook path.

Routes and commands are enumerated from the application itself (the FastAPI app's routes,
the Typer app's commands), so one added later fails this test, naming it, until it is
classified here: probed with two organisations, or named as not tenant-scoped and why.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import typer.main
from sqlalchemy import select
from starlette.routing import Mount
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app as cli_app
from sync import operators, organisations
from sync.customer import CustomerIn
from sync.customers import create_customer
from sync.engine import sync_connection
from sync.store.db import engine_for, transaction
from sync.store.models import (
    Conflict,
    ConnectionRow,
    CustomerRow,
    Operator,
    RecordFailure,
    SyncRun,
)
from tests.conftest import Figures
from tests.security.conftest import World, outbound_message

# --- the two organisations' data ------------------------------------------------------

A_ADMIN = "admin@a.example"
B_ADMIN = "admin@b.example"
SHARED = "both@example.com"  # an operator of both organisations, one password for each
PASSWORD = "a-password-for-org-a"
B_PASSWORD = "b-password-for-org-b"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Data:
    """What organisation B has, that A must never see or touch."""

    customer: str
    external_id: str
    entity: str
    run: str
    conflict: str
    failure: str
    a_customer: str
    operator: str  # B's admin: id
    operator_email: str

    def ids(self) -> list[str]:
        return [
            self.customer,
            self.entity,
            self.run,
            self.conflict,
            self.failure,
            self.operator,
            self.operator_email,
        ]


def _seed(world: World) -> Data:
    stack, crm = world.stack, world.crm
    shared = crm.hubspot.create("companies", {"name": "Shared Co", "city": "Lyon"})
    crm.hubspot.create("companies", {"name": ""})  # a blank name fails the customer model
    with transaction(stack.engine) as session:
        entity = organisations.create_business_entity(session, world.b.id, "B GmbH").id
        # B already has the CRM record's customer, by another name: a conflict on link
        customer = str(
            create_customer(
                session, world.b.id, CustomerIn(customer_name="B's Name", external_id=shared)
            ).id
        )
        create_customer(
            session,
            world.b.id,
            CustomerIn(customer_name="B Only", external_id="B-1", email="only@b.example"),
        )
        a_customer = str(
            create_customer(
                session, world.a.id, CustomerIn(customer_name="A's Own", external_id="A-1")
            ).id
        )
        # console operators: an admin in each organisation, and one e-mail in both with a
        # password per organisation
        for org, email, password in (
            (world.a.id, A_ADMIN, PASSWORD),
            (world.b.id, B_ADMIN, B_PASSWORD),
            (world.a.id, SHARED, PASSWORD),
            (world.b.id, SHARED, B_PASSWORD),
        ):
            new = operators.add_operator(session, org, email, "admin", by="test")
            operators.set_password(session, new.token, password)
            if email == B_ADMIN:
                b_operator = new.id
    for connection in (world.b.hubspot, world.a.hubspot):
        result = sync_connection(stack.engine, stack.settings, connection)
        assert result.status == "succeeded", result.error
    with transaction(stack.engine) as session:
        run = session.scalars(select(SyncRun.id).where(SyncRun.organisation_id == world.b.id))
        conflict = session.scalars(
            select(Conflict.id).where(Conflict.organisation_id == world.b.id)
        )
        failure = session.scalars(
            select(RecordFailure.id).where(RecordFailure.organisation_id == world.b.id)
        )
        return Data(
            customer,
            "B-1",
            entity,
            run.first() or "",
            conflict.first() or "",
            failure.first() or "",
            a_customer,
            b_operator,
            B_ADMIN,
        )


def _snapshot(world: World) -> dict[str, Any]:
    """B's side of the store, to compare before and after A's attempts."""
    with transaction(world.stack.engine) as session:
        return {
            "customers": sorted(
                (c.id, c.customer_name, c.external_id, c.email)
                for c in session.scalars(
                    select(CustomerRow).where(CustomerRow.organisation_id == world.b.id)
                )
            ),
            "connections": sorted(
                (c.id, c.name, c.state, c.credentials, json.dumps(c.settings, sort_keys=True))
                for c in session.scalars(
                    select(ConnectionRow).where(ConnectionRow.organisation_id == world.b.id)
                )
            ),
            "conflicts": sorted(
                (c.id, c.status)
                for c in session.scalars(
                    select(Conflict).where(Conflict.organisation_id == world.b.id)
                )
            ),
            "failures": sorted(
                (f.id, f.status, f.attempts)
                for f in session.scalars(
                    select(RecordFailure).where(RecordFailure.organisation_id == world.b.id)
                )
            ),
            "operators": sorted(
                (o.id, o.email, o.role, o.active, o.password_hash, o.session_epoch)
                for o in session.scalars(
                    select(Operator).where(Operator.organisation_id == world.b.id)
                )
            ),
        }


@pytest.fixture
def data(world: World) -> Iterator[Data]:
    yield _seed(world)
    engine_for(world.stack.settings.database_url).dispose()
    engine_for.cache_clear()


# --- HTTP routes ---------------------------------------------------------------------

Probe = Callable[[World, Data], None]


def _leaks(world: World, data: Data, text: str) -> list[str]:
    return [i for i in [*data.ids(), world.b.api_key, *world.b.secrets().values()] if i in text]


def probe_public(world: World, data: Data, path: str) -> None:
    answer = world.http.get(world.api + path)
    assert answer.status_code < 500
    assert _leaks(world, data, answer.text) == []


def probe_create_customer(world: World, data: Data) -> None:
    url = world.api + "/customers"
    # A's key does not open B
    mixed = {"organisation": world.b.id, "x-api-key": world.a.api_key}
    assert world.http.post(url, json={"customer_name": "X"}, headers=mixed).status_code == 401
    # B's business entity is not A's
    refused = world.http.post(
        url,
        json={"customer_name": "X", "business_entity_id": data.entity},
        headers=world.a.headers,
    )
    assert refused.status_code == 422, refused.text
    # B's external id and e-mail are free in A (unique per organisation, and not a probe)
    made = world.http.post(
        url,
        json={"customer_name": "Mine", "external_id": data.external_id},
        headers=world.a.headers,
    )
    assert made.status_code == 201, made.text
    assert _leaks(world, data, made.text) == []


def probe_list_customers(world: World, data: Data) -> None:
    url = world.api + "/customers"
    listed = world.http.get(url, headers=world.a.headers, params={"limit": 1000})
    assert listed.status_code == 200
    assert data.customer not in listed.text and data.a_customer in listed.text
    by_external = world.http.get(url, headers=world.a.headers, params={"external_id": "A-1"})
    assert [c["id"] for c in by_external.json()] == [data.a_customer]
    mixed = {"organisation": world.b.id, "x-api-key": world.a.api_key}
    assert world.http.get(url, headers=mixed).status_code == 401


def probe_get_customer(world: World, data: Data) -> None:
    url = f"{world.api}/customers/{data.customer}"
    answer = world.http.get(url, headers=world.a.headers)
    assert answer.status_code == 404 and "B's Name" not in answer.text
    mixed = {"organisation": world.b.id, "x-api-key": world.a.api_key}
    assert world.http.get(url, headers=mixed).status_code == 401
    assert world.http.get(url, headers=world.b.headers).status_code == 200  # B's own: yes


def probe_patch_customer(world: World, data: Data) -> None:
    url = f"{world.api}/customers/{data.customer}"
    answer = world.http.patch(url, json={"customer_name": "Taken"}, headers=world.a.headers)
    assert answer.status_code == 404
    mixed = {"organisation": world.b.id, "x-api-key": world.a.api_key}
    assert world.http.patch(url, json={"customer_name": "T"}, headers=mixed).status_code == 401


def probe_contacts(world: World, data: Data) -> None:
    """B's customer's contacts: not listed, added to or changed through A (404)."""
    url = f"{world.api}/customers/{data.customer}/contacts"
    assert world.http.get(url, headers=world.a.headers).status_code == 404
    added = world.http.post(url, json={"name": "Intruder"}, headers=world.a.headers)
    assert added.status_code == 404
    patched = world.http.patch(
        f"{url}/{uuid.uuid4()}", json={"name": "Intruder"}, headers=world.a.headers
    )
    assert patched.status_code == 404
    mixed = {"organisation": world.b.id, "x-api-key": world.a.api_key}
    assert world.http.get(url, headers=mixed).status_code == 401
    assert world.http.get(url, headers=world.b.headers).status_code == 200  # B's own: yes


def probe_hubspot_webhook(world: World, data: Data) -> None:
    path = f"/webhooks/hubspot/{world.b.hubspot}"
    body = world.hubspot_body("1", event_id=77)
    signed_by_a = world.hubspot_headers(path, body, world.a.hubspot_secret)
    assert world.post(path, body, signed_by_a).status_code == 401
    # A's connection id on B's path prefix is still A's connection: signed by B, refused
    path_a = f"/webhooks/hubspot/{world.a.hubspot}"
    signed_by_b = world.hubspot_headers(path_a, body, world.b.hubspot_secret)
    assert world.post(path_a, body, signed_by_b).status_code == 401
    assert world.inbox() == 0 and world.enqueued() == 0


def probe_salesforce_webhook(world: World, data: Data) -> None:
    message = outbound_message(world.b.salesforce_org, ("04l000000000077AAA", "001X")).encode()
    path = f"/webhooks/salesforce/{world.b.salesforce}?secret={world.a.salesforce_secret}"
    assert world.post(path, message, {"Content-Type": "text/xml"}).status_code == 401
    # B's organisation id to A's connection, with A's secret: another organisation
    path_a = f"/webhooks/salesforce/{world.a.salesforce}?secret={world.a.salesforce_secret}"
    assert world.post(path_a, message, {"Content-Type": "text/xml"}).status_code == 401
    assert world.inbox() == 0 and world.enqueued() == 0


def probe_generic_webhook(world: World, data: Data) -> None:
    """The plug-ins' path: B's connection under another kind, or under its own kind but
    signed by A, stores and enqueues nothing."""
    body = world.hubspot_body("1", event_id=88)
    for path in (
        f"/webhooks/pipedrive/{world.b.hubspot}",
        f"/webhooks/nosuchcrm/{world.b.hubspot}",
    ):
        answer = world.post(path, body, world.hubspot_headers(path, body, world.a.hubspot_secret))
        assert answer.status_code in (401, 404), (path, answer.status_code)
        assert _leaks(world, data, answer.text) == []
    assert world.inbox() == 0 and world.enqueued() == 0


def _api_get(world: World, data: Data, path: str, **params: str) -> httpx.Response:
    answer = world.http.get(world.api + path, headers=world.a.headers, params=params)
    assert answer.status_code < 500, (path, answer.status_code)
    # the id A typed may be echoed back ("no conflict X"); nothing else of B's may
    leaks = [x for x in _leaks(world, data, answer.text) if x not in path]
    assert leaks == [], f"GET {path} shows B's {leaks}"
    return answer


def probe_api_listing(path: str) -> Probe:
    """A's list (conflicts, runs, failures, connections) holds none of B's; B's connection
    as a filter is 404; A's key does not open B."""

    def probe(world: World, data: Data) -> None:
        everything = {"status": "all"} if path in ("/conflicts", "/failures") else {}
        listed = _api_get(world, data, path, **everything)
        assert listed.status_code == 200, listed.text
        assert world.b.hubspot not in listed.text and world.b.salesforce not in listed.text
        if path != "/connections":
            filtered = _api_get(world, data, path, connection=world.b.hubspot)
            assert filtered.status_code == 404, (path, filtered.status_code)
        mixed = {"organisation": world.b.id, "x-api-key": world.a.api_key}
        assert world.http.get(world.api + path, headers=mixed).status_code == 401

    return probe


def probe_api_one(template: str) -> Probe:
    """One of B's things by its id, through A's key: 404, nothing shown."""

    def probe(world: World, data: Data) -> None:
        path = _b_path(template, world, data)
        assert _api_get(world, data, path).status_code == 404, path
        assert world.http.get(world.api + path, headers=world.b.headers).status_code == 200

    return probe


def probe_api_action(template: str, body: dict[str, str] | None = None) -> Probe:
    """An action on one of B's things (or filtered by B's connection) through A's key:
    404, nothing changed (the snapshot), nothing queued."""

    def probe(world: World, data: Data) -> None:
        path = _b_path(template, world, data)
        sent = {k: _b_path(v, world, data) for k, v in body.items()} if body else None
        answer = world.http.post(world.api + path, json=sent, headers=world.a.headers)
        assert answer.status_code == 404, (path, answer.status_code, answer.text)
        typed = path + str(sent)
        leaks = [x for x in _leaks(world, data, answer.text) if x not in typed]
        assert leaks == [], f"POST {path} shows B's {leaks}"
        assert world.stack.queue_length("operator") == 0

    return probe


def probe_api_retry_all(world: World, data: Data) -> None:
    """Retrying every failure of B's connection or run is 404; unfiltered, only A's."""
    probe_api_action("/failures/retry", {"connection": "{connection_id}"})(world, data)
    probe_api_action("/failures/retry", {"run_id": "{run_id}"})(world, data)
    url = world.api + "/failures/retry"
    answer = world.http.post(url, headers=world.a.headers)
    assert answer.status_code == 200, answer.text
    assert _leaks(world, data, answer.text) == []


# --- the console: A's admin signed in, reaching for B -----------------------------------


class Console:
    """A browser-less visitor to the console, signed in as A's admin."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.http = httpx.Client(base_url=world.api, follow_redirects=False, timeout=30)
        token = self.csrf("/console/sign-in")
        signed = self.http.post(
            "/console/sign-in",
            data={"email": A_ADMIN, "password": PASSWORD, "csrf_token": token},
        )
        assert signed.status_code == 303, signed.text

    def csrf(self, path: str = "/console/connections") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, (path, page.status_code)
        found = CSRF.search(page.text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def get(self, path: str, data: Data) -> httpx.Response:
        answer = self.http.get(path)
        assert answer.status_code < 500, (path, answer.status_code)
        assert _leaks(self.world, data, answer.text) == [], f"GET {path} shows B's data"
        return answer

    def post(self, path: str, data: Data, form: dict[str, str] | None = None) -> httpx.Response:
        answer = self.http.post(path, data={"csrf_token": self.csrf(), **(form or {})})
        assert answer.status_code < 500, (path, answer.status_code)
        assert _leaks(self.world, data, answer.text) == [], f"POST {path} shows B's data"
        return answer


def console_probe(world: World, data: Data) -> Console:
    console = getattr(world, "_console", None)
    if console is None:
        console = Console(world)
        world._console = console  # type: ignore[attr-defined]
    return console


def probe_console_listing(path: str) -> Probe:
    """A's listing pages (also asked for B's connection as a filter) show only A's."""

    def probe(world: World, data: Data) -> None:
        console = console_probe(world, data)
        assert console.get(path, data).status_code in (200, 303)
        if path in ("/console/conflicts", "/console/failures", "/console/audit"):
            answer = console.get(f"{path}?connection={world.b.hubspot}", data)
            assert answer.status_code == 404

    return probe


def probe_console_page(template: str) -> Probe:
    """A page of one of B's things, by its id: 404, nothing shown."""

    def probe(world: World, data: Data) -> None:
        path = _b_path(template, world, data)
        assert console_probe(world, data).get(path, data).status_code == 404, path

    return probe


def probe_console_action(template: str, form: dict[str, str] | None = None) -> Probe:
    """An action on one of B's things, by its id: 404, nothing changed (the snapshot)."""

    def probe(world: World, data: Data) -> None:
        path = _b_path(template, world, data)
        answer = console_probe(world, data).post(path, data, form)
        assert answer.status_code == 404, (path, answer.status_code)

    return probe


def _b_path(template: str, world: World, data: Data) -> str:
    return template.format(
        connection_id=world.b.hubspot,
        conflict_id=data.conflict,
        customer_id=data.customer,
        failure_id=data.failure,
        run_id=data.run,
        operator_id=data.operator,
    )


def probe_console_bulk(world: World, data: Data) -> None:
    """Bulk actions filtered by B's connection refuse; unfiltered, they reach only A's."""
    console = console_probe(world, data)
    for path, form in (
        ("/console/conflicts/resolve", {"action": "crm", "connection": world.b.hubspot}),
        ("/console/failures/retry", {"connection": world.b.hubspot}),
    ):
        # refused, or resolved nothing (the snapshot shows B's conflicts untouched)
        assert console.post(path, data, form).status_code in (303, 404), path
    console.post("/console/conflicts/resolve", data, {"action": "billing"})


def probe_console_creates(world: World, data: Data) -> None:
    """A connection and an operator added by A's admin land in A, whatever B has."""
    console = console_probe(world, data)
    console.post(
        "/console/operators", data, {"email": "new@a.example", "role": "viewer", "name": "New"}
    )
    console.post(
        "/console/connections",
        data,
        {
            "kind": "hubspot",
            "name": "added-by-a",
            "credentials": "access_token=t\nclient_secret=s",
            "options": f"host={world.crm.hubspot_url}",
        },
    )
    with transaction(world.stack.engine) as session:
        mine = session.scalars(
            select(Operator.email).where(Operator.organisation_id == world.a.id)
        ).all()
    assert "new@a.example" in mine


def probe_console_sign_in(world: World, data: Data) -> None:
    """An operator of both organisations signs in to each with that organisation's
    password only; B's admin with A's password gets nothing."""
    with httpx.Client(base_url=world.api, follow_redirects=False, timeout=30) as http:
        for email, password, organisation in (
            (SHARED, PASSWORD, world.b.id),  # A's password, B chosen
            (B_ADMIN, PASSWORD, world.a.id),
            (B_ADMIN, PASSWORD, ""),
        ):
            page = http.get("/console/sign-in")
            token = CSRF.search(page.text)
            assert token is not None
            answer = http.post(
                "/console/sign-in",
                data={
                    "email": email,
                    "password": password,
                    "organisation": organisation,
                    "csrf_token": token.group(1),
                },
            )
            assert answer.status_code == 401, (email, organisation, answer.status_code)
            # the form keeps the e-mail typed; nothing else of B's
            assert [x for x in _leaks(world, data, answer.text) if x != email] == []
        # with B's password and B chosen, the shared operator is B's (their own: yes)
        page = http.get("/console/sign-in")
        token = CSRF.search(page.text)
        assert token is not None
        answer = http.post(
            "/console/sign-in",
            data={
                "email": SHARED,
                "password": B_PASSWORD,
                "organisation": world.b.id,
                "csrf_token": token.group(1),
            },
        )
        assert answer.status_code == 303
        assert world.a.hubspot not in http.get("/console/connections").text


def probe_console_password_links(world: World, data: Data) -> None:
    """A set-password form with a made-up or spent token changes nobody's password."""
    with httpx.Client(base_url=world.api, follow_redirects=False, timeout=30) as http:
        page = http.get("/console/set-password")
        assert page.status_code == 200
        token = CSRF.search(page.text)
        assert token is not None
        answer = http.post(
            "/console/set-password",
            data={
                "csrf_token": token.group(1),
                "token": "not-a-token",
                "password": "another-long-password",
                "confirm": "another-long-password",
            },
        )
        assert answer.status_code in (400, 401, 403, 404, 422), answer.status_code
        assert _leaks(world, data, answer.text) == []


def probe_console_sign_out(world: World, data: Data) -> None:
    """Signing A's admin out ends A's session only (B's is not A's to end)."""
    console = Console(world)
    try:
        assert console.post("/console/sign-out", data).status_code == 303
        assert console.http.get("/console/connections").status_code in (303, 401)
    finally:
        console.http.close()


#: every route of the app: a probe with two organisations, or why it is not tenant-scoped
PUBLIC = "framework or health: no tenant data"
ROUTES: dict[tuple[str, str], Probe | str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): "operator-wide metrics: counts labelled by connection and "
    "organisation ids, never a customer, a value or a secret (probed as public)",
    ("POST", "/customers"): probe_create_customer,
    ("GET", "/customers"): probe_list_customers,
    ("GET", "/customers/{customer_id}"): probe_get_customer,
    ("PATCH", "/customers/{customer_id}"): probe_patch_customer,
    ("GET", "/customers/{customer_id}/contacts"): probe_contacts,
    ("POST", "/customers/{customer_id}/contacts"): probe_contacts,
    ("PATCH", "/customers/{customer_id}/contacts/{contact_id}"): probe_contacts,
    ("GET", "/conflicts"): probe_api_listing("/conflicts"),
    ("GET", "/conflicts/{conflict_id}"): probe_api_one("/conflicts/{conflict_id}"),
    ("POST", "/conflicts/{conflict_id}/resolve"): probe_api_action(
        "/conflicts/{conflict_id}/resolve", {"keep": "crm"}
    ),
    ("GET", "/runs"): probe_api_listing("/runs"),
    ("GET", "/runs/{run_id}"): probe_api_one("/runs/{run_id}"),
    ("GET", "/failures"): probe_api_listing("/failures"),
    ("GET", "/audit"): probe_api_listing("/audit"),
    ("GET", "/failures/{failure_id}"): probe_api_one("/failures/{failure_id}"),
    ("POST", "/failures/{failure_id}/retry"): probe_api_action("/failures/{failure_id}/retry"),
    ("POST", "/failures/retry"): probe_api_retry_all,
    ("GET", "/connections"): probe_api_listing("/connections"),
    ("GET", "/connections/{connection_id}"): probe_api_one("/connections/{connection_id}"),
    ("POST", "/connections/{connection_id}/sync"): probe_api_action(
        "/connections/{connection_id}/sync"
    ),
    ("POST", "/webhooks/hubspot/{connection_id}"): probe_hubspot_webhook,
    ("POST", "/webhooks/salesforce/{connection_id}"): probe_salesforce_webhook,
    ("POST", "/webhooks/{kind}/{connection_id}"): probe_generic_webhook,
    # the console
    ("MOUNT", "/console/static"): "the console's own CSS and JavaScript: no tenant data",
    ("GET", "/console/sign-in"): PUBLIC,
    ("POST", "/console/sign-in"): probe_console_sign_in,
    ("GET", "/console/set-password"): PUBLIC,
    ("POST", "/console/set-password"): probe_console_password_links,
    ("POST", "/console/sign-out"): probe_console_sign_out,
    ("GET", "/console/"): probe_console_listing("/console/"),
    ("GET", "/console/connections"): probe_console_listing("/console/connections"),
    ("GET", "/console/conflicts"): probe_console_listing("/console/conflicts"),
    ("GET", "/console/customers"): probe_console_listing("/console/customers"),
    ("GET", "/console/failures"): probe_console_listing("/console/failures"),
    ("GET", "/console/operators"): probe_console_listing("/console/operators"),
    ("GET", "/console/runs"): probe_console_listing("/console/runs"),
    ("GET", "/console/audit"): probe_console_listing("/console/audit"),
    ("GET", "/console/conflicts/{conflict_id}"): probe_console_page(
        "/console/conflicts/{conflict_id}"
    ),
    ("GET", "/console/connections/{connection_id}"): probe_console_page(
        "/console/connections/{connection_id}"
    ),
    ("GET", "/console/connections/{connection_id}/plan"): probe_console_page(
        "/console/connections/{connection_id}/plan"
    ),
    ("GET", "/console/customers/{customer_id}"): probe_console_page(
        "/console/customers/{customer_id}"
    ),
    ("GET", "/console/failures/{failure_id}"): probe_console_page("/console/failures/{failure_id}"),
    ("GET", "/console/runs/{run_id}"): probe_console_page("/console/runs/{run_id}"),
    ("POST", "/console/connections/{connection_id}/pause"): probe_console_action(
        "/console/connections/{connection_id}/pause"
    ),
    ("POST", "/console/connections/{connection_id}/resume"): probe_console_action(
        "/console/connections/{connection_id}/resume"
    ),
    ("POST", "/console/connections/{connection_id}/sync"): probe_console_action(
        "/console/connections/{connection_id}/sync"
    ),
    ("POST", "/console/connections/{connection_id}/connector"): probe_console_action(
        "/console/connections/{connection_id}/connector"
    ),
    ("POST", "/console/connections/{connection_id}/options"): probe_console_action(
        "/console/connections/{connection_id}/options",
        {"schedule_seconds": "60", "match_mode": "exact", "create_policy": "create"},
    ),
    ("POST", "/console/conflicts/{conflict_id}/resolve"): probe_console_action(
        "/console/conflicts/{conflict_id}/resolve", {"action": "crm"}
    ),
    ("POST", "/console/failures/{failure_id}/retry"): probe_console_action(
        "/console/failures/{failure_id}/retry"
    ),
    ("POST", "/console/operators/{operator_id}/role"): probe_console_action(
        "/console/operators/{operator_id}/role", {"role": "viewer"}
    ),
    ("POST", "/console/operators/{operator_id}/link"): probe_console_action(
        "/console/operators/{operator_id}/link"
    ),
    ("POST", "/console/operators/{operator_id}/remove"): probe_console_action(
        "/console/operators/{operator_id}/remove"
    ),
    ("POST", "/console/conflicts/resolve"): probe_console_bulk,
    ("POST", "/console/failures/retry"): probe_console_bulk,
    ("POST", "/console/connections"): probe_console_creates,
    ("POST", "/console/operators"): probe_console_creates,
}


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the real app, mounted sub-apps included."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            if hasattr(route, "effective_candidates"):  # FastAPI's included routers
                yield from walk(list(route.effective_candidates()), prefix)
                continue
            if isinstance(route, Mount):
                yield from walk(list(route.routes), prefix + route.path)
                if not route.routes:
                    yield "MOUNT", prefix + route.path
                continue
            original = getattr(route, "original_route", route)
            path = getattr(route, "path", "") or getattr(original, "path", "")
            methods = getattr(original, "methods", None) or {"ANY"}
            for method in sorted(set(methods) - {"HEAD"}):
                yield method, prefix + path

    return sorted(set(walk(list(create_app().routes), "")))


def test_every_route_keeps_organisations_apart(world: World, data: Data, figures: Figures) -> None:
    routes = app_routes()
    unclassified = [f"{m} {p}" for m, p in routes if (m, p) not in ROUTES]
    assert unclassified == [], f"routes not classified for tenant isolation: {unclassified}"
    before = _snapshot(world)
    probed = 0
    try:
        for method, path in routes:
            probe = ROUTES[(method, path)]
            if isinstance(probe, str):
                probe_public(world, data, path)
            else:
                probe(world, data)
            probed += 1
    finally:
        console = getattr(world, "_console", None)
        if console is not None:
            console.http.close()
    assert _snapshot(world) == before, "B's data changed through A"
    figures.report(routes=len(routes), probed=probed, leaks=0)


# --- CLI commands --------------------------------------------------------------------


def cli_commands() -> list[str]:
    """Every command of the Typer app, as the words that run it."""

    def walk(command: Any, words: tuple[str, ...]) -> Iterator[str]:
        subs: dict[str, Any] = {}
        if hasattr(command, "list_commands"):
            # listed and loaded through the group, as a user's command line would (the
            # top level loads its command modules lazily); typer's groups may be built on
            # its own copy of click, so this asks what a group can do, not its class
            ctx = type(command).context_class(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    subs[name] = sub
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*words, name))
            if getattr(command, "invoke_without_command", False):
                yield " ".join(words)
        else:
            yield " ".join(words)

    return sorted(walk(typer.main.get_command(cli_app), ()))


Run = Callable[..., Any]

GLOBAL = "operator-wide, takes no organisation"
#: a CLI command's probe: the arguments to run as organisation A against B's objects, and
#: the exit code A must get; or why the command is not tenant-scoped
CliProbe = Callable[[World, Data], list[list[str]]] | str


CLI: dict[str, CliProbe] = {
    "worker": GLOBAL,
    "beat": GLOBAL,
    "up": GLOBAL,
    "web": GLOBAL,
    "db upgrade": GLOBAL,
    "orgs create": GLOBAL,
    "orgs list": "operator-wide: lists organisations by name, none of their data",
    "sandbox serve": "the CRM emulator: no tenant data",
    "secret-key": GLOBAL,
    "secret-key rotate": GLOBAL,
    "customers sample-csv": "writes a template file: no tenant data",
    "sync": lambda w, d: [["sync", w.b.hubspot, "--org", w.a.id, "--json"]],
    "retry": lambda w, d: [["retry", d.failure, "--org", w.a.id, "--json"]],
    "resync": lambda w, d: [["resync", d.customer, "--org", w.a.id, "--json"]],
    "entities create": lambda w, d: [],  # creates in A only: checked by the listing below
    "entities list": lambda w, d: [["entities", "list", "--org", w.a.id, "--json"]],
    "customers list": lambda w, d: [
        ["customers", "list", "--org", w.a.id, "--json", "--limit", "1000"],
        ["customers", "list", "--org", w.a.id, "--json", "--external-id", d.external_id],
    ],
    "customers show": lambda w, d: [["customers", "show", d.customer, "--org", w.a.id]],
    "customers import": lambda w, d: [],  # imports into A only: see the import check
    "customers import-contacts": lambda w, d: [],  # into A's customers only: see its check
    "customers add-contact": lambda w, d: [
        ["customers", "add-contact", d.customer, "--org", w.a.id, "--name", "Intruder"]
    ],
    "customers set-contact": lambda w, d: [
        ["customers", "set-contact", d.customer, str(uuid.uuid4()), "--org", w.a.id, "--name", "X"]
    ],
    "connections list": lambda w, d: [["connections", "list", "--org", w.a.id, "--json"]],
    "connections show": lambda w, d: [["connections", "show", w.b.hubspot, "--org", w.a.id]],
    "connections test": lambda w, d: [["connections", "test", w.b.hubspot, "--org", w.a.id]],
    "connections pause": lambda w, d: [["connections", "pause", w.b.hubspot, "--org", w.a.id]],
    "connections resume": lambda w, d: [["connections", "resume", w.b.hubspot, "--org", w.a.id]],
    "connections set": lambda w, d: [
        ["connections", "set", w.b.hubspot, "--org", w.a.id, "--schedule", "60", "--no-check"]
    ],
    "connectors list": "lists the installed connectors: no tenant data",
    "health ready": "checks the store and the broker: no tenant data",
    "health beat": "checks beat's heartbeat: no tenant data",
    "connections add pipedrive": lambda w, d: [],  # adds to A only: see the add check
    "connections add": lambda w, d: [],  # adds to A only: see the add check
    "operators add": lambda w, d: [],  # adds to A only: see the creators below
    "operators list": lambda w, d: [["operators", "list", "--org", w.a.id, "--json"]],
    "operators link": lambda w, d: [["operators", "link", d.operator_email, "--org", w.a.id]],
    "operators remove": lambda w, d: [["operators", "remove", d.operator_email, "--org", w.a.id]],
    "connections add salesforce": lambda w, d: [],  # adds to A only: see the add check
    "connections add hubspot": lambda w, d: [],
    "runs list": lambda w, d: [["runs", "list", "--org", w.a.id, "--json"]],
    "audit list": lambda w, d: [
        ["audit", "list", "--org", w.a.id, "--json"],
        ["audit", "list", "--org", w.a.id, "--json", "--connection", w.b.hubspot],
        ["audit", "list", "--org", w.a.id, "--json", "--customer", d.customer],
    ],
    "runs show": lambda w, d: [["runs", "show", d.run, "--org", w.a.id]],
    "failures list": lambda w, d: [["failures", "list", "--org", w.a.id, "--json", "--all"]],
    "failures show": lambda w, d: [["failures", "show", d.failure, "--org", w.a.id]],
    "conflicts list": lambda w, d: [
        ["conflicts", "list", "--org", w.a.id, "--json", "--status", "all"]
    ],
    "conflicts show": lambda w, d: [["conflicts", "show", d.conflict, "--org", w.a.id]],
    "conflicts resolve": lambda w, d: [
        ["conflicts", "resolve", d.conflict, "--org", w.a.id, "--keep", "crm"]
    ],
}


def test_every_cli_command_keeps_organisations_apart(
    world: World, data: Data, figures: Figures, tmp_path: Any
) -> None:
    commands = cli_commands()
    unclassified = [c for c in commands if c not in CLI]
    assert unclassified == [], f"CLI commands not classified for tenant isolation: {unclassified}"
    runner = CliRunner()
    before = _snapshot(world)
    runs = 0
    # writes that create: they land in A, whatever B has
    csv = tmp_path / "a.csv"
    csv.write_text(f"customer_name,external_id\nImported,{data.external_id}\n")
    creators = [
        ["entities", "create", "--org", world.a.id, "A Entity", "--json"],
        ["customers", "import", str(csv), "--org", world.a.id, "--json"],
        [
            "connections",
            "add",
            "hubspot",
            "hs",
            "--org",
            world.a.id,
            "--access-token",
            "t",
            "--client-secret",
            "s",
            "--host",
            world.crm.hubspot_url,
            "--no-check",
            "--json",
        ],
        ["operators", "add", "--org", world.a.id, "cli@a.example", "--role", "viewer"],
    ]
    for args in creators:
        result = runner.invoke(cli_app, args)
        runs += 1
        assert result.exit_code in (0, 4), f"{args}: {result.exit_code} {result.output}"
        assert _leaks(world, data, result.output) == [], args
    # contacts for B's customer, named by its id, are refused as no customer of A's
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(f"customer_id,name,email\n{data.customer},Intruder,intruder@a.example\n")
    refused = runner.invoke(
        cli_app, ["customers", "import-contacts", str(contacts), "--org", world.a.id]
    )
    runs += 1
    assert refused.exit_code == 4, refused.output
    assert "no customer" in refused.output + refused.stderr
    # the id A typed may be echoed back; nothing else of B's may
    shown = refused.output + refused.stderr
    assert [x for x in _leaks(world, data, shown) if x != data.customer] == []
    for command in commands:
        probe = CLI[command]
        if isinstance(probe, str):
            continue
        for args in probe(world, data):
            result = runner.invoke(cli_app, args)
            runs += 1
            # the id A typed may be echoed back ("no conflict X"); nothing else of B's may
            leaks = [x for x in _leaks(world, data, result.output + result.stderr) if x not in args]
            assert leaks == [], f"crmsync {' '.join(args)} showed B's {leaks}"
            # B's id, named as the command's object or as a filter: not found, exit 3
            named = next((a for a in args[1:] if a in [*data.ids(), world.b.hubspot]), None)
            if named is not None:
                assert result.exit_code == 3, (
                    f"crmsync {' '.join(args)}: exit {result.exit_code}, not 3 (not found)\n"
                    f"{result.output}"
                )
            else:
                assert result.exit_code == 0, f"{args}: {result.exit_code} {result.output}"
    assert _snapshot(world) == before, "B's data changed through A"
    figures.report(commands=len(commands), invocations=runs, leaks=0)
