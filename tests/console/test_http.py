"""The console over plain HTTP, on PostgreSQL and SQLite: the session cookie's flags and
signature, CSRF refusals, the sign-in rate limit, roles, and another organisation's pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute
from sqlalchemy import delete
from typer.testing import CliRunner

from api.console import PAGES
from cli.main import app
from sync.connections import pause_for_limit
from sync.store.db import engine_for, transaction
from sync.store.models import (
    AuditEvent,
    Conflict,
    ConnectionRow,
    CustomerRow,
    Operator,
    RecordFailure,
    utcnow,
)
from sync.store.sync_repository import record_connection_failure
from tests.console.conftest import (
    PASSWORD,
    World,
    a_customer,
    a_run,
    open_conflicts,
    open_failures,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Visitor:
    """A browser-less visitor: one cookie jar, no redirects followed."""

    def __init__(self, world: World, **headers: str) -> None:
        self.world = world
        self.http = httpx.Client(
            base_url=world.base, trust_env=False, follow_redirects=False, headers=headers
        )

    def csrf(self, path: str = "/console/sign-in") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def sign_in(self, who: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf()
        return self.http.post(
            "/console/sign-in",
            data={"email": self.world.emails[who], "password": password, "csrf_token": token},
        )

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def visitor(world: World) -> Iterator[Visitor]:
    v = Visitor(world)
    yield v
    v.close()


def test_the_session_cookie_is_signed_httponly_lax_and_secure_behind_https(world: World) -> None:
    plain = httpx.get(f"{world.base}/console/sign-in", trust_env=False)
    cookie = plain.headers["set-cookie"]
    assert cookie.startswith("crmsync_console=")
    flags = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert {"httponly", "samesite=lax", "path=/console"} <= set(flags)
    assert "secure" not in flags  # plain http on loopback
    # behind a TLS-terminating proxy (uvicorn trusts X-Forwarded-Proto from loopback)
    proxied = httpx.get(
        f"{world.base}/console/sign-in",
        headers={"x-forwarded-proto": "https"},
        trust_env=False,
    )
    assert "secure" in [p.strip().lower() for p in proxied.headers["set-cookie"].split(";")]
    # the API and its JSON errors carry no console cookie
    assert "set-cookie" not in httpx.get(f"{world.base}/healthz", trust_env=False).headers


def test_a_tampered_cookie_is_not_a_session(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("viewer").status_code == 303
    assert visitor.http.get("/console/connections").status_code == 200
    value = visitor.http.cookies["crmsync_console"]
    payload, stamp, signature = value.split(".")
    forged = ".".join([payload, stamp, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")])
    visitor.http.cookies.set("crmsync_console", forged, domain="127.0.0.1", path="/console")
    answer = visitor.http.get("/console/connections")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")


def test_forms_without_the_sessions_csrf_token_are_refused(world: World, visitor: Visitor) -> None:
    visitor.csrf()  # an anonymous session
    refused = visitor.http.post(
        "/console/sign-in",
        data={"email": world.emails["operator"], "password": PASSWORD},
    )
    assert refused.status_code == 403 and "expired" in refused.text
    assert visitor.sign_in("operator").status_code == 303
    pause = f"/console/connections/{world.salesforce}/pause"
    assert visitor.http.post(pause).status_code == 403
    assert visitor.http.post(pause, data={"csrf_token": "not-the-token"}).status_code == 403
    # another session's token is not this session's
    other = Visitor(world)
    try:
        foreign = other.csrf()
    finally:
        other.close()
    assert visitor.http.post(pause, data={"csrf_token": foreign}).status_code == 403
    assert world.rows(ConnectionRow, id=world.salesforce)[0].state == "active"
    # the page's own token works, and is audited with the operator's name
    token = visitor.csrf(f"/console/connections/{world.salesforce}")
    assert visitor.http.post(pause, data={"csrf_token": token}).status_code == 303
    assert world.rows(ConnectionRow, id=world.salesforce)[0].state == "paused"
    resume = f"/console/connections/{world.salesforce}/resume"
    assert visitor.http.post(resume, data={"csrf_token": token}).status_code == 303
    trail = world.rows(AuditEvent, subject=world.salesforce)
    assert {(a.action, a.actor) for a in trail} >= {
        ("connection_paused", "console:Otto Operator <otto@acme.example>"),
        ("connection_resumed", "console:Otto Operator <otto@acme.example>"),
    }


FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
ASSET = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)


def every_page(world: World) -> list[str]:
    """A path of each console page an admin of Acme reads."""
    conflict = open_conflicts(world)[0]
    return [
        "/console/connections",
        f"/console/connections/{world.salesforce}",
        "/console/conflicts",
        f"/console/conflicts/{conflict.id}",
        "/console/failures",
        f"/console/failures/{a_failure(world, world.org).id}",
        "/console/runs",
        f"/console/runs/{a_run(world, world.org).id}",
        "/console/customers",
        f"/console/customers/{conflict.customer_id}",
        "/console/audit",
        "/console/operators",
    ]


def test_the_console_serves_its_own_assets_and_loads_nothing_from_elsewhere(
    world: World, visitor: Visitor
) -> None:
    """No CDN and no build step: every script, style sheet and image a page names is a file
    of the app's own, served from /console/static/."""
    assert visitor.sign_in("admin").status_code == 303
    assets: set[str] = set()
    for path in [*every_page(world), "/console/sign-in", "/console/set-password"]:
        page = visitor.http.get(path)
        assert page.status_code == 200, path
        assets.update(ASSET.findall(page.text))
    assert assets == {"/console/static/console.css", "/console/static/console.js"}
    types = {"css": "text/css", "js": "javascript"}
    for asset in assets:
        answer = httpx.get(world.base + asset, trust_env=False)
        assert answer.status_code == 200 and answer.content, asset
        assert types[asset.rsplit(".", 1)[1]] in answer.headers["content-type"]
        assert "http://" not in answer.text and "https://" not in answer.text, asset


def test_every_form_carries_the_csrf_token_and_every_post_needs_it(
    world: World, visitor: Visitor
) -> None:
    """Every form on every console page (an admin sees them all) carries this session's
    token, and every POST route of the console refuses a request without it."""
    assert visitor.sign_in("admin").status_code == 303
    conflict = open_conflicts(world)[0]
    failure = a_failure(world, world.org)
    pages = every_page(world)
    token = visitor.csrf("/console/connections")
    posts = 0
    for path in pages:
        page = visitor.http.get(path)
        assert page.status_code == 200, path
        for attributes, body in FORM.findall(page.text):
            if 'method="post"' not in attributes.lower():
                continue
            posts += 1
            assert f'name="csrf_token" value="{token}"' in body, (path, attributes)
    assert posts >= 20
    # the console's POST routes, from its own routers, each refused without the token
    ids = {
        "connection_id": world.salesforce,
        "conflict_id": conflict.id,
        "failure_id": failure.id,
        "operator_id": "00000000-0000-0000-0000-000000000000",
    }
    routes = [
        "/console" + route.path.format(**ids)
        for page in PAGES
        for route in page.router.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or ())
    ]
    assert len(routes) >= 15
    for path in routes:
        assert visitor.http.post(path, data={"action": "crm"}).status_code == 403, path
    assert world.rows(ConnectionRow, id=world.salesforce)[0].state == "active"


def test_sign_in_attempts_are_rate_limited(world: World, visitor: Visitor) -> None:
    for _ in range(5):
        wrong = visitor.sign_in("limited", "not the password at all")
        assert wrong.status_code == 401 and "Wrong e-mail or password" in wrong.text
    # the sixth attempt is refused without the password being looked at, right or not
    limited = visitor.sign_in("limited")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "too many failed sign-ins" in limited.text
    assert visitor.http.get("/console/connections").status_code == 303  # not signed in
    # other operators (from the same address) are not locked out by it
    other = Visitor(world)
    try:
        assert other.sign_in("viewer").status_code == 303
    finally:
        other.close()


def test_a_viewer_reads_but_cannot_act(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("viewer").status_code == 303
    page = visitor.http.get("/console/conflicts")
    assert page.status_code == 200 and "Keep billing" not in page.text
    token = visitor.csrf("/console/connections")
    conflict = open_conflicts(world)[0]
    for path in (
        f"/console/connections/{world.hubspot}/pause",
        f"/console/connections/{world.hubspot}/sync",
        f"/console/conflicts/{conflict.id}/resolve",
        "/console/failures/retry",
        "/console/operators",
    ):
        answer = visitor.http.post(path, data={"csrf_token": token, "action": "crm"})
        assert answer.status_code == 403, path
        assert "Your role (viewer) cannot do this" in answer.text
    assert visitor.http.get("/console/operators").status_code == 403
    assert world.rows(ConnectionRow, id=world.hubspot)[0].state == "active"
    assert conflict.id in {c.id for c in open_conflicts(world)}


def a_failure(world: World, org: str) -> RecordFailure:
    return world.rows(RecordFailure, organisation_id=org)[0]


def test_another_organisations_pages_answer_404(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("other").status_code == 303
    theirs = {
        "connection": f"/console/connections/{world.hubspot}",
        "plan": f"/console/connections/{world.hubspot}/plan",
        "customer": f"/console/customers/{a_customer(world, world.org).id}",
        "run": f"/console/runs/{a_run(world, world.org).id}",
        "failures": f"/console/failures?connection={world.hubspot}",
        "conflicts": f"/console/conflicts?connection={world.hubspot}",
        "conflict": f"/console/conflicts/{open_conflicts(world)[0].id}",
        "failure": f"/console/failures/{a_failure(world, world.org).id}",
    }
    for what, path in theirs.items():
        answer = visitor.http.get(path)
        assert answer.status_code == 404, what
        assert "no such" in answer.text
    token = visitor.csrf("/console/connections")
    conflict = open_conflicts(world)[0]
    for path in (
        f"/console/connections/{world.hubspot}/pause",
        f"/console/conflicts/{conflict.id}/resolve",
    ):
        assert (
            visitor.http.post(path, data={"csrf_token": token, "action": "crm"}).status_code == 404
        )
    # their own pages answer
    mine = visitor.http.get(f"/console/connections/{world.other_connection}")
    assert mine.status_code == 200 and "globex-hubspot" in mine.text
    listing = visitor.http.get("/console/connections")
    assert "globex-hubspot" in listing.text and "acme-hubspot" not in listing.text


def test_operators_add_prints_a_one_time_link_that_sets_a_password(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in world.env.items():
        if key.startswith("CRMSYNC_"):
            monkeypatch.setenv(key, value)
    email = f"nina-{world.backend}@acme.example"
    runner = CliRunner()
    try:
        added = runner.invoke(
            app, ["operators", "add", "--org", world.org, email, "--role", "viewer"]
        )
        assert added.exit_code == 0, added.output
        link = added.stdout.strip().splitlines()[-1]
        # a second add of the same e-mail is refused (exit 4)
        twice = runner.invoke(
            app, ["operators", "add", "--org", world.org, email, "--role", "viewer"]
        )
        assert twice.exit_code == 4 and "already an operator" in twice.stderr
        listed = runner.invoke(app, ["operators", "list", "--org", world.org, "--json"])
        assert {"email": email, "role": "viewer", "password_set": False}.items() <= next(
            o for o in json.loads(listed.stdout) if o["email"] == email
        ).items()
    finally:
        engine_for(world.settings.database_url).dispose()
        engine_for.cache_clear()
    assert link.startswith(f"{world.base}/console/set-password#")
    token = link.split("#", 1)[1]
    visitor = Visitor(world)
    try:
        form = visitor.csrf("/console/set-password")
        short = visitor.http.post(
            "/console/set-password",
            data={"csrf_token": form, "token": token, "password": "short", "confirm": "short"},
        )
        assert short.status_code == 422 and "at least 12 characters" in short.text
        new_password = "a long enough passphrase"
        done = visitor.http.post(
            "/console/set-password",
            data={"csrf_token": form, "token": token, "password": new_password,
                  "confirm": new_password},
        )  # fmt: skip
        assert done.status_code == 303
        # stored as an argon2id hash of the password, never the password itself
        (stored,) = world.rows(Operator, organisation_id=world.org, email=email)
        assert stored.password_hash.startswith("$argon2id$")
        assert new_password not in stored.password_hash
        assert PasswordHasher().verify(stored.password_hash, new_password)
        # the link is spent
        again = visitor.http.post(
            "/console/set-password",
            data={"csrf_token": visitor.csrf("/console/set-password"), "token": token,
                  "password": new_password, "confirm": new_password},
        )  # fmt: skip
        assert again.status_code == 422 and "not valid any more" in again.text
        world.emails["nina"] = email
        assert visitor.sign_in("nina", new_password).status_code == 303
        assert visitor.http.get("/console/connections").status_code == 200
    finally:
        visitor.close()


def test_signing_out_or_being_removed_ends_the_session(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("admin").status_code == 303
    token = visitor.csrf("/console/operators")
    added = visitor.http.post(
        "/console/operators",
        data={"csrf_token": token, "email": "temp@acme.example", "role": "operator"},
    )
    assert added.status_code == 200
    link = re.search(r'value="(http[^"]+/console/set-password#[^"]+)"', added.text)
    assert link is not None
    temp = Visitor(world)
    try:
        form = temp.csrf("/console/set-password")
        password = "temporary operator password"
        temp.http.post(
            "/console/set-password",
            data={"csrf_token": form, "token": link.group(1).split("#")[1],
                  "password": password, "confirm": password},
        )  # fmt: skip
        world.emails["temp"] = "temp@acme.example"
        assert temp.sign_in("temp", password).status_code == 303
        assert temp.http.get("/console/connections").status_code == 200
        page = visitor.http.get("/console/operators").text
        temp_id = re.search(
            r"/console/operators/([0-9a-f-]{36})/remove", page.split("temp@acme.example", 1)[1]
        )
        assert temp_id is not None
        demoted = visitor.http.post(
            f"/console/operators/{temp_id.group(1)}/role",
            data={"csrf_token": token, "role": "viewer"},
        )
        assert demoted.status_code == 303
        removed = visitor.http.post(
            f"/console/operators/{temp_id.group(1)}/remove", data={"csrf_token": token}
        )
        assert removed.status_code == 303
        assert temp.http.get("/console/connections").status_code == 303  # signed out at once
        # each of the admin's actions is in the audit trail with her name
        events = world.rows(AuditEvent, organisation_id=world.org, subject=temp_id.group(1))
        trail = [(a.action, a.actor) for a in sorted(events, key=lambda a: a.id)]
        ada = "console:Ada Admin <ada@acme.example>"
        assert trail == [
            ("operator_added", ada),
            ("operator_password_set", "console:temp <temp@acme.example>"),
            ("operator_role_changed", ada),
            ("operator_removed", ada),
        ]
    finally:
        temp.close()
    out = visitor.http.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303
    assert visitor.http.get("/console/connections").status_code == 303


def test_sync_now_queues_a_sync_for_a_worker(world: World, visitor: Visitor) -> None:
    """Through tasks/ as ``crmsync sync`` does: Redis on PostgreSQL, the file queue on the
    embedded default."""
    assert visitor.sign_in("operator").status_code == 303
    token = visitor.csrf(f"/console/connections/{world.hubspot}")
    before = world.queued()
    answer = visitor.http.post(
        f"/console/connections/{world.hubspot}/sync?back=/console/connections",
        data={"csrf_token": token},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/connections"
    assert world.queued() == before + 1
    assert "queued for a worker" in visitor.http.get("/console/connections").text


def test_a_filtered_set_is_resolved_with_one_value_of_its_field(
    world: World, visitor: Visitor
) -> None:
    """Filtered to one field, the queue's bulk form sets one value on both sides of every
    conflict it shows; unfiltered, it refuses (one value for a name and a city is wrong)."""
    assert visitor.sign_in("operator").status_code == 303
    names = open_conflicts(world, field="customer_name", connection_id=world.hubspot)
    assert names, "the seed opened name conflicts"
    page = visitor.http.get(
        "/console/conflicts", params={"connection": world.hubspot, "field": "customer_name"}
    )
    assert page.status_code == 200 and 'name="value"' in page.text.split('class="card bulk"')[1]
    token = CSRF.search(page.text)
    assert token is not None
    unfiltered = visitor.http.post(
        "/console/conflicts/resolve",
        data={"csrf_token": token.group(1), "action": "value", "value": "One Name Ltd"},
    )
    assert unfiltered.status_code == 303
    assert "filter the queue by one field" in visitor.http.get("/console/conflicts").text
    assert len(open_conflicts(world, field="customer_name")) >= len(names)

    agreed = f"Agreed Bulk Name {world.backend}"
    answer = visitor.http.post(
        "/console/conflicts/resolve",
        data={
            "csrf_token": token.group(1),
            "action": "value",
            "value": agreed,
            "connection": world.hubspot,
            "field": "customer_name",
        },
    )
    assert answer.status_code == 303
    assert f"Resolved {len(names)} conflict(s)" in visitor.http.get("/console/conflicts").text
    assert open_conflicts(world, field="customer_name", connection_id=world.hubspot) == []
    for conflict in names:
        done = world.rows(Conflict, id=conflict.id)[0]
        assert (done.resolution, done.resolved_value) == ("value", agreed)
        assert done.resolved_by == "console:Otto Operator <otto@acme.example>"
        assert world.sandbox.hubspot.read(conflict.crm_id)["properties"]["name"] == agreed
        customer = world.rows(CustomerRow, id=conflict.customer_id)[0]
        assert customer.customer_name == agreed
        # its own page says how and by whom
        shown = visitor.http.get(f"/console/conflicts/{conflict.id}").text
        assert "set a value on both sides" in shown and "Otto Operator" in shown


def test_retry_all_retries_every_open_failure_shown(world: World, visitor: Visitor) -> None:
    """The failures page, filtered to a connection, retries every open failure it shows;
    they then show as retried under 'all', and each retry is audited with the operator."""
    assert visitor.sign_in("operator").status_code == 303
    opened = [f for f in open_failures(world) if f.connection_id == world.hubspot]
    assert opened, "the seed left failures"
    listing = f"/console/failures?connection={world.hubspot}"
    page = visitor.http.get(listing)
    assert f"Retry all {len(opened)} shown" in page.text
    token = CSRF.search(page.text)
    assert token is not None
    answer = visitor.http.post(
        "/console/failures/retry",
        params={"back": listing},
        data={"csrf_token": token.group(1), "connection": world.hubspot},
    )
    assert answer.status_code == 303 and answer.headers["location"] == listing
    shown = visitor.http.get(listing).text
    assert f"Retried {len(opened)}: {len(opened)} recovered, 0 still failing" in shown
    assert "No open failures for this connection" in shown
    assert [f for f in open_failures(world) if f.connection_id == world.hubspot] == []
    for failure in opened:
        assert world.rows(RecordFailure, id=failure.id)[0].status in ("retried", "resolved")
        phone = failure.payload["fields"]["phone_number"]
        assert world.sandbox.hubspot.read(str(failure.crm_id))["properties"]["phone"] == phone
    retried = {
        a.detail["failure_id"]: a.actor
        for a in world.rows(AuditEvent, organisation_id=world.org, action="failure_retried")
    }
    for failure in opened:
        assert retried[failure.id] == "console:Otto Operator <otto@acme.example>"
    everything = visitor.http.get(listing + "&status=all").text
    assert all(f'id="failure-{f.id}"' in everything for f in opened)
    assert 'value="all" selected' in everything and "Retry all" not in everything


def test_admins_change_a_connections_options_and_operators_cannot(
    world: World, visitor: Visitor
) -> None:
    assert visitor.sign_in("admin").status_code == 303
    token = visitor.csrf(f"/console/connections/{world.salesforce}")
    options = {
        "csrf_token": token,
        "schedule_seconds": "600",
        "match_mode": "normalized",
        "create_policy": "create",
        "push_creates": "true",
        "direction.phone_number": "crm_to_billing",
    }
    changed = visitor.http.post(f"/console/connections/{world.salesforce}/options", data=options)
    assert changed.status_code == 303
    row = world.rows(ConnectionRow, id=world.salesforce)[0]
    assert (row.schedule_seconds, row.match_mode) == (600, "normalized")
    assert row.directions["phone_number"] == "crm_to_billing"
    audit = [
        a
        for a in world.rows(AuditEvent, subject=world.salesforce)
        if a.action == "connection_changed"
    ]
    assert audit and audit[-1].actor == "console:Ada Admin <ada@acme.example>"
    bad = visitor.http.post(
        f"/console/connections/{world.salesforce}/options",
        data={**options, "match_mode": "fuzzy"},
    )
    assert bad.status_code == 303
    assert (
        "Options not changed" in visitor.http.get(f"/console/connections/{world.salesforce}").text
    )
    operator = Visitor(world)
    try:
        assert operator.sign_in("operator").status_code == 303
        own = operator.csrf("/console/connections")
        refused = operator.http.post(
            f"/console/connections/{world.salesforce}/options", data={**options, "csrf_token": own}
        )
        assert refused.status_code == 403
    finally:
        operator.close()


def test_the_add_form_lists_what_each_installed_connector_takes(
    world: World, visitor: Visitor
) -> None:
    assert visitor.sign_in("admin").status_code == 303
    page = visitor.http.get("/console/connections").text
    for kind, name in (("hubspot", "access_token"), ("salesforce", "instance_url")):
        assert f'id="fields-{kind}"' in page and f"<code>{name}</code>" in page
    if 'id="fields-pipedrive"' in page:  # the plug-in, when installed (make install)
        assert "<code>company_url</code>" in page and "<code>api_token</code>" in page
    # a setting the connector's model refuses is refused in the model's own words
    form = {
        "csrf_token": visitor.csrf("/console/connections"),
        "kind": "hubspot",
        "name": "bad-options",
        "credentials": "access_token=x",
        "options": "host=not a url\nmax_attempts=0",
        "check": "false",
    }
    assert visitor.http.post("/console/connections", data=form).status_code == 303
    shown = visitor.http.get("/console/connections").text
    assert "not an http(s) URL" in shown and "--max-attempts" in shown


def test_admins_add_a_connection_checked_with_the_crm(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("admin").status_code == 303
    token = visitor.csrf("/console/connections")
    secret_token = f"console-added-token-{world.backend}"
    form = {
        "csrf_token": token,
        "kind": "hubspot",
        "name": "acme-hubspot-eu",
        "credentials": f"access_token={secret_token}\nclient_secret=also-secret",
        "options": f"host={world.sandbox.hubspot_url}\nbackoff_base_seconds=0.01",
        "check": "true",
    }
    added = visitor.http.post("/console/connections", data=form)
    assert added.status_code == 303
    page = visitor.http.get(added.headers["location"]).text
    assert "acme-hubspot-eu" in page and "backoff_base_seconds" in page
    assert secret_token not in page and "also-secret" not in page
    row = next(
        r
        for r in world.rows(ConnectionRow, organisation_id=world.org)
        if r.name == "acme-hubspot-eu"
    )
    assert row.settings["backoff_base_seconds"] == 0.01 and secret_token not in row.credentials
    audit = world.rows(AuditEvent, subject=row.id)
    assert [(a.action, a.detail["credentials"]) for a in audit] == [
        ("connection_added", ["access_token", "client_secret"])
    ]
    # a CRM that cannot be reached: refused, nothing stored, nothing typed echoed
    refused = visitor.http.post(
        "/console/connections",
        data={**form, "name": "unreachable", "options": "host=http://127.0.0.1:9\nmax_attempts=1"},
    )
    assert refused.status_code == 303
    shown = visitor.http.get("/console/connections").text
    assert "Connection not added" in shown and secret_token not in shown
    assert "unreachable" not in {
        r.name for r in world.rows(ConnectionRow, organisation_id=world.org)
    }
    # operators cannot add one
    operator = Visitor(world)
    try:
        assert operator.sign_in("operator").status_code == 303
        own = operator.csrf("/console/connections")
        assert (
            operator.http.post("/console/connections", data={**form, "csrf_token": own}).status_code
            == 403
        )
    finally:
        operator.close()


def test_the_connections_page_shows_a_pause_by_a_crm_limit_and_the_allowance_used(
    world: World, visitor: Visitor
) -> None:
    engine = world.engine()
    try:
        with transaction(engine) as session:
            row = session.get(ConnectionRow, world.hubspot)
            assert row is not None
            pause_for_limit(
                row, utcnow() + timedelta(hours=3), "You have reached your daily limit."
            )
            row.api_usage = {"used": 250_000, "limit": 1_000_000, "window": "day", "at": "x"}
    finally:
        engine.dispose()
    assert visitor.sign_in("viewer").status_code == 303
    page = visitor.http.get("/console/connections").text
    assert "status-paused_by_limit" in page
    assert "by a CRM limit until" in page and "You have reached your daily limit." in page
    assert "250000 of 1000000 used (25.0 %, per day)" in page
    one = visitor.http.get(f"/console/connections/{world.hubspot}").text
    assert "paused by a CRM limit until" in one and "it resumes by itself" in one
    assert "not mapped" in one


def test_a_connections_failure_is_labelled_on_the_failures_pages(
    world: World, visitor: Visitor
) -> None:
    """A run that failed as a whole shows as its connection's failure, not as a record's."""
    engine = world.engine()
    failure_id = ""
    try:
        with transaction(engine) as session:
            failure, _ = record_connection_failure(
                session,
                organisation_id=world.other_org,
                connection_id=world.other_connection,
                run_id=a_run(world, world.other_org).id,
                error_kind="auth",
                error_code="401",
                error_message="AuthError: HubSpot 401: the token expired",
                payload={"scope": "connection", "trigger": "schedule", "full": False},
            )
            failure_id = failure.id
        assert visitor.sign_in("other").status_code == 303
        listing = visitor.http.get("/console/failures")
        assert listing.status_code == 200
        row = re.search(
            rf'<tr id="failure-{failure_id}" class="connection-failure">(.*?)</tr>',
            listing.text,
            re.S,
        )
        assert row, "the connection's failure is listed, marked as such"
        assert "connection: run failed" in row.group(1) and "HubSpot 401" in row.group(1)
        page = visitor.http.get(f"/console/failures/{failure_id}")
        assert page.status_code == 200
        assert "Connection failure:" in page.text and "as a whole" in page.text
        assert "next automatic retry" not in page.text
    finally:
        with transaction(engine) as session:
            session.execute(delete(RecordFailure).where(RecordFailure.id == failure_id))
        engine.dispose()


def test_a_connections_page_says_how_to_point_its_crms_webhooks_at_crmsync(
    world: World, visitor: Visitor
) -> None:
    assert visitor.sign_in("viewer").status_code == 303
    hubspot = visitor.http.get(f"/console/connections/{world.hubspot}").text
    assert f"/webhooks/hubspot/{world.hubspot}" in hubspot
    assert "company.merge" in hubspot and "v3 signature" in hubspot
    salesforce = visitor.http.get(f"/console/connections/{world.salesforce}").text
    assert f"/webhooks/salesforce/{world.salesforce}?secret=WEBHOOK_SECRET" in salesforce


def test_a_next_run_already_past_is_due_at_the_next_dispatch(
    world: World, visitor: Visitor
) -> None:
    engine = world.engine()
    kept = ("state", "next_sync_at", "limit_until", "limit_reason")
    try:
        with transaction(engine) as session:
            row = session.get(ConnectionRow, world.hubspot)
            assert row is not None
            saved = {name: getattr(row, name) for name in kept}
            # an active connection (an earlier test may have paused it by a CRM limit)
            row.state, row.limit_until, row.limit_reason = "active", None, None
            row.next_sync_at = utcnow() - timedelta(seconds=30)
        assert visitor.sign_in("viewer").status_code == 303
        for path in ("/console/connections", f"/console/connections/{world.hubspot}"):
            page = " ".join(visitor.http.get(path).text.split())
            shown = page[page.find("Next run") :][:300]
            assert "due now</time>, at the next dispatch" in shown, (path, shown)
            assert "30 s ago" not in shown, (path, shown)
    finally:
        with transaction(engine) as session:
            row = session.get(ConnectionRow, world.hubspot)
            assert row is not None
            for name, value in saved.items():
                setattr(row, name, value)
        engine.dispose()
