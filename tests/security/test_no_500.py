"""No input to any HTTP route answers 500 (issue 9, hole 4).

Every route of the real app (the customer API, the webhooks, the console, health and
metrics) is enumerated from the app itself, so a route added later is covered without
being named here. Each is sent bad inputs where it takes them — in its path, its query,
its JSON or form body, its headers: NUL and other control characters, huge values, wrong
types, malformed JSON and XML — both anonymously and as a signed-in caller (the API's
organisation and key; a console admin with a valid CSRF token; webhooks correctly signed
or with the connection's secret), so that the bad input reaches the route's own code and
not only its guard. Every answer must be below 500. On PostgreSQL (which refuses a NUL
where SQLite stores it).

``make test`` sends a handful of bad values per place; ``make test-slow`` the full set.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from starlette.routing import Mount

from api.app import create_app
from connectors.hubspot.webhooks import signature_v3
from sync import operators, organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.customer import CustomerIn
from sync.customers import create_customer
from sync.settings import Settings
from sync.store.db import engine_for, transaction
from sync.store.models import Conflict, LinkRow, RecordFailure, SyncRun
from tests.conftest import Figures
from tests.security.conftest import outbound_message

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

SLOW = os.environ.get("CRMSYNC_HYPOTHESIS_PROFILE") == "slow"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
EMAIL, PASSWORD = "admin@example.com", "a-long-enough-password"
HUBSPOT_SECRET, SALESFORCE_SECRET, SALESFORCE_ORG = "hs-secret-1", "sf-secret-1", "00D000000000001"

#: bad text, wherever text goes (the first few in ``make test``)
BAD_TEXT = [
    "\x00",
    "a\x01b\x1f\x7f",
    "x" * 20_000,
    "\ud800",
    "",
    " ",
    "-1",
    "1e400",
    "../../etc/passwd",
    "%00",
    "\u202e\ufeff\u2028",
    "é" * 300,
    "null",
    "[]",
    "0" * 40,
]
QUICK = 3
FORM = {"content-type": "application/x-www-form-urlencoded"}
#: bad JSON bodies (raw bytes) for routes that take JSON
BAD_JSON = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"1",
    b'"x"',
    b"\xff\xfe\x00",
    b'{"customer_name": "\\u0000"}',
    b'{"customer_name": "\\ud800"}',
    b'{"customer_name": 1e999}',
    b"[" * 5000 + b"]" * 5000,
    b'{"customer_name": "a", "address": "not an object"}',
    b'{"customer_name": {"nested": [1, 2]}}',
    b'[{"objectId": "\\u0000", "eventId": null, "subscriptionType": 7}]',
    b'[{"objectId": 1e999, "eventId": "x", "occurredAt": "now"}]',
]
#: bad XML bodies for Outbound Messages
BAD_XML = [
    b"<",
    b"\x00<x/>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
    b"<soapenv:Envelope/>",
    "<x>\ud800</x>".encode("utf-8", "surrogatepass"),
]


@dataclass
class Setup:
    """One organisation with what the routes take ids of, and a signed-in console."""

    organisation: str
    api_key: str
    ids: dict[str, str]
    hubspot: str
    salesforce: str
    csrf: str = ""
    answers: list[tuple[str, str, int]] = field(default_factory=list)
    requests: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"organisation": self.organisation, "x-api-key": self.api_key}


def app_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, path, route) of every route of the app, mounted sub-apps included."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str, Any]]:
        for route in routes:
            if hasattr(route, "effective_candidates"):  # FastAPI's included routers
                yield from walk(list(route.effective_candidates()), prefix)
                continue
            if isinstance(route, Mount):
                yield from walk(list(route.routes), prefix + route.path)
                if not route.routes:
                    yield "GET", prefix + route.path + "/{path}", route
                continue
            original = getattr(route, "original_route", route)
            path = getattr(route, "path", "") or getattr(original, "path", "")
            for method in sorted(set(getattr(original, "methods", None) or {"GET"}) - {"HEAD"}):
                yield method, prefix + path, original

    found = {(m, p): r for m, p, r in walk(list(app.routes), "")}
    return [(m, p, r) for (m, p), r in sorted(found.items())]


def _set_up(settings: Settings) -> Setup:
    engine = engine_for(settings.database_url)
    with transaction(engine) as session:
        org = organisations.create_organisation(session, "Acme Billing")
        entity = organisations.create_business_entity(session, org.id, "Acme EU").id
        customer = str(
            create_customer(session, org.id, CustomerIn(customer_name="Acme", external_id="A-1")).id
        )
        admin = operators.add_operator(session, org.id, EMAIL, "admin", by="test")
        operators.set_password(session, admin.token, PASSWORD)
        unreachable = {"request_timeout": 1.0, "max_attempts": 1}
        hubspot = add_connection(
            session,
            settings,
            org.id,
            ConnectionSpec(
                name="hubspot",
                kind="hubspot",
                credentials={"access_token": "token-1", "client_secret": HUBSPOT_SECRET},
                settings={"host": "http://127.0.0.1:9", **unreachable},
            ),
            check=False,
        ).id
        salesforce = add_connection(
            session,
            settings,
            org.id,
            ConnectionSpec(
                name="salesforce",
                kind="salesforce",
                credentials={"access_token": "token-2", "webhook_secret": SALESFORCE_SECRET},
                settings={
                    "instance_url": "https://127.0.0.1:9",
                    "organization_id": SALESFORCE_ORG,
                    **unreachable,
                },
            ),
            check=False,
        ).id
    with transaction(engine) as session:
        # a conflict, a run and a failure for the operations routes to reach (their CRM,
        # 127.0.0.1:9, does not answer: a resolve or a retry meets the CRM's error)
        link = LinkRow(
            organisation_id=org.id, connection_id=hubspot, customer_id=customer, crm_id="1"
        )
        run = SyncRun(organisation_id=org.id, connection_id=hubspot, trigger="operator")
        session.add_all([link, run])
        session.flush()
        conflict = Conflict(
            organisation_id=org.id,
            connection_id=hubspot,
            link_id=link.id,
            customer_id=customer,
            crm_id="1",
            field="customer_name",
            base_value="Acme",
            billing_value="Acme",
            crm_value="Acme CRM",
        )
        failure = RecordFailure(
            organisation_id=org.id,
            connection_id=hubspot,
            run_id=run.id,
            direction="pull",
            crm_id="1",
            error_kind="record",
            error_message="refused",
        )
        session.add_all([conflict, failure])
        session.flush()
        operations = {"conflict_id": conflict.id, "run_id": run.id, "failure_id": failure.id}
    ids = {
        **operations,
        "customer_id": customer,
        "connection_id": hubspot,
        "operator_id": admin.id,
        "business_entity_id": entity,
        "kind": "hubspot",
    }
    return Setup(org.id, org.api_key, ids, hubspot, salesforce)


def _sign_in(client: TestClient, setup: Setup) -> None:
    page = client.get("/console/sign-in")
    found = CSRF.search(page.text)
    assert found, "no CSRF token on the sign-in page"
    signed = client.post(
        "/console/sign-in",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": found.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    again = CSRF.search(client.get("/console/connections").text)
    assert again, "no CSRF token once signed in"
    setup.csrf = again.group(1)


def _crm_unavailable(answer: Any) -> bool:
    """A designed answer, not a crash: a route that called the CRM says the CRM refused
    (502) or is unavailable (503: the setup's CRMs do not answer), as JSON."""
    if answer.status_code not in (502, 503):
        return False
    try:
        detail = answer.json().get("detail")
    except ValueError:
        return False
    return isinstance(detail, str) and detail.startswith("the CRM: ")


def _send(client: TestClient, setup: Setup, method: str, url: str, **options: Any) -> None:
    setup.requests += 1
    answer = client.request(method, url, follow_redirects=False, **options)
    if answer.status_code >= 500 and not _crm_unavailable(answer):
        shown = url if len(url) < 200 else url[:200] + "..."
        setup.answers.append((method, shown, answer.status_code))


def _params(route: Any, kind: str) -> list[str]:
    """The names of the route's parameters of one kind (path, query, header, form)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return ["path"] if kind == "path" else []
    found: list[str] = []

    def walk(dep: Any) -> None:
        source = {
            "path": dep.path_params,
            "query": dep.query_params,
            "header": dep.header_params,
            "form": dep.body_params,
        }[kind]
        found.extend(p.alias or p.name for p in source)
        for sub in dep.dependencies:
            walk(sub)

    walk(dependant)
    return list(dict.fromkeys(found))


def _fill(path: str, values: dict[str, str]) -> str:
    def value(found: re.Match[str]) -> str:
        return quote(values.get(found.group(1), "x"), safe="", errors="surrogatepass")

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def _one_at_a_time(names: list[str]) -> list[list[str]]:
    """Which parameters to make bad together: each alone (``make test-slow``), or all at
    once (``make test``: fewer requests; a route refuses its first bad one anyway)."""
    return [[name] for name in names] if SLOW else [names]


def _webhook_headers(setup: Setup, path: str, body: bytes) -> dict[str, str]:
    """What makes the body reach parsing: HubSpot's v3 signature, Salesforce's secret."""
    if "/webhooks/hubspot/" in path:
        stamp = str(int(time.time() * 1000))
        url = "http://testserver" + path
        return {
            "X-HubSpot-Signature-v3": signature_v3(HUBSPOT_SECRET, "POST", url, body, stamp),
            "X-HubSpot-Request-Timestamp": stamp,
            "Content-Type": "application/json",
        }
    if "/webhooks/salesforce/" in path:
        return {"X-Crmsync-Secret": SALESFORCE_SECRET, "Content-Type": "text/xml"}
    return {"Content-Type": "application/json"}


def _probe(client: TestClient, setup: Setup, method: str, path: str, route: Any) -> None:
    bad = BAD_TEXT if SLOW else BAD_TEXT[:QUICK]
    real = dict(setup.ids)
    if path.startswith("/webhooks/salesforce/"):
        real["connection_id"] = setup.salesforce
    api = {"headers": setup.headers} if not path.startswith("/console") else {}
    csrf = {"x-csrf-token": setup.csrf}
    form_route = path.startswith("/console") and method == "POST"
    json_route = method in ("POST", "PATCH", "PUT") and not form_route
    # the path: each parameter bad in turn, the others real
    for name in _params(route, "path"):
        for value in bad:
            url = _fill(path, {**real, name: value})
            _send(client, setup, method, url, headers={**api.get("headers", {}), **csrf})
            if SLOW:
                _send(client, setup, method, url)  # anonymous
    url = _fill(path, real)
    # the query: each parameter (and an unknown one) bad in turn
    for names in _one_at_a_time([*_params(route, "query"), "unknown"]):
        for value in bad:
            # a URL holds one huge value at most (clients refuse longer ones)
            many = names if len(value) < 1000 else names[:1]
            query = urlencode(dict.fromkeys(many, value), errors="surrogatepass")
            _send(client, setup, method, f"{url}?{query}", headers=api.get("headers"))
    # the headers: each declared one bad, and the API's credentials odd
    for name in _params(route, "header"):
        for value in (b"x" * 20_000, b"\xe9\xff\x01", b""):
            _send(client, setup, method, url, headers={**api.get("headers", {}), name: value})
    # the body
    if form_route:
        names = _params(route, "form") or ["field"]
        for bad_names in _one_at_a_time(names):
            for value in bad:
                form = dict.fromkeys(names, "1") | dict.fromkeys(bad_names, value)
                content = urlencode(form, errors="surrogatepass").encode()
                _send(client, setup, method, url, content=content, headers=FORM | csrf)
        _send(client, setup, method, url, content=b"\x00\xff", headers=csrf)
        _send(
            client,
            setup,
            method,
            url,
            content=b'{"a": 1}',
            headers={**csrf, "content-type": "application/json"},
        )
    elif json_route:
        bodies = BAD_JSON if SLOW else BAD_JSON[:3] + BAD_JSON[7:11]
        if "/webhooks/salesforce/" in path:
            bodies = [
                *bodies,
                *BAD_XML,
                outbound_message(SALESFORCE_ORG, ("\x00", "\x01")).encode(),
            ]
        for body in bodies:
            headers = {**api.get("headers", {}), **_webhook_headers(setup, url, body)}
            _send(client, setup, method, url, content=body, headers=headers)
        if path.endswith("/resolve") and not path.startswith("/console"):
            # valid choices and bad values: the resolution reaches the CRM, or the model
            for choice in ({"keep": "crm"}, {"keep": "billing"}, *({"value": v} for v in bad)):
                body = json.dumps(choice).encode()
                headers = {**setup.headers, "content-type": "application/json"}
                _send(client, setup, method, url, content=body, headers=headers)
        if path.startswith("/customers"):
            for value in bad:
                for name in ("customer_name", "email", "external_id", "business_entity_id"):
                    body = json.dumps({"customer_name": "Acme", name: value}).encode()
                    _send(
                        client,
                        setup,
                        method,
                        url,
                        content=body,
                        headers={**setup.headers, "content-type": "application/json"},
                    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_input_to_any_route_answers_500(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded queue's files, if a route enqueues
    monkeypatch.delenv("CRMSYNC_BROKER_URL", raising=False)
    settings = Settings(database_url=database_url, secret_key=new_secret_key())
    app = create_app(settings)
    routes = app_routes(app)
    setup = _set_up(settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            _sign_in(client, setup)
            for method, path, route in routes:
                if path == "/console/sign-out":
                    continue  # last: it ends the session the others use
                _probe(client, setup, method, path, route)
            _probe(client, setup, "POST", "/console/sign-out", None)
    finally:
        engine_for(database_url).dispose()
        engine_for.cache_clear()
    figures.report(routes=len(routes), requests=setup.requests, answers_500=len(setup.answers))
    assert setup.answers == [], f"{len(setup.answers)} answers of 500: {setup.answers[:20]}"
