"""The console in a real browser: Debian's headless Chromium, driven by Playwright, against
``crmsync web`` on PostgreSQL with data from real syncs. Each page is saved as a screenshot
under ``test-artifacts/console/`` (the path is printed at the end of the run)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync import operators
from sync.connections import pause_for_limit
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.engine import sync_connection
from sync.store.db import transaction
from sync.store.models import (
    AuditEvent,
    Conflict,
    ConnectionRow,
    LinkRow,
    RecordFailure,
    utcnow,
)
from tests.conftest import service_missing
from tests.console.conftest import (
    ARTIFACTS,
    PASSWORD,
    World,
    a_customer,
    a_run,
    open_conflicts,
    open_failures,
)

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (Playwright makes it a fresh profile directory)."""
    if not CHROMIUM.exists():
        service_missing("Chromium", FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)"))
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def world(pg_world: World) -> World:
    return pg_world


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page."""
    context = browser.new_context(base_url=world.base, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def shot(page: Any, name: str) -> None:
    """Save the page as a screenshot, once it is known to fit the window's width (a long
    unbroken error or URL once pushed a run's page out sideways)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: the page is {overflow} px wider than the window"
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, world: World, who: str, password: str = PASSWORD) -> None:
    page.goto("/console/connections")
    assert "/console/sign-in" in page.url
    page.fill("input[name=email]", world.emails[who])
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/console/connections")


def flash(page: Any) -> str:
    return str(page.locator(".flash").first.inner_text())


def test_sign_in_and_see_a_connections_health(page: Any, world: World) -> None:
    page.goto("/console/connections")
    assert "/console/sign-in" in page.url
    shot(page, "01-sign-in")
    page.fill("input[name=email]", world.emails["operator"])
    page.fill("input[name=password]", "a wrong password here")
    page.click("button:has-text('Sign in')")
    assert "Wrong e-mail or password" in flash(page)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/console/connections")
    assert "Otto Operator" in page.inner_text("header")

    card = page.locator("article[data-connection='acme-hubspot']")
    text = card.inner_text()
    assert "hubspot" in text and "active" in text
    # the last run: it succeeded, leaving two records HubSpot refused in the dead letter
    assert re.search(r"Last run\s+succeeded with 2 failures", text), text
    assert re.search(r"Conflicts\s+5 open", text), text
    assert re.search(r"Failures\s+2 open", text), text
    assert re.search(r"API calls\s+[1-9]\d* in the last 24 h", text), text
    assert "Lag" in text
    assert "every 15 min" in text
    # the allowance as the CRMs' own answers reported it (HubSpot's daily rate headers,
    # Salesforce's Sforce-Limit-Info), after the seed's real syncs
    assert re.search(r"CRM allowance\s+[1-9]\d* of \d+ used \(\d+\.\d %, per day\)", text), text
    # the billing edits made after Salesforce's last sync wait to be pushed there: its lag
    salesforce = page.locator("article[data-connection='acme-salesforce']").inner_text()
    assert re.search(r"Lag\s+\d+(\.\d)? (s|min) \(\d+ billing change\(s\) to push", salesforce)
    assert re.search(r"CRM allowance\s+[1-9]\d* of \d+ used .*per rolling 24 hours", salesforce)
    assert page.locator("article[data-connection='globex-hubspot']").count() == 0
    shot(page, "02-connections")

    card.locator("h2 a").click()
    page.wait_for_url(f"**/console/connections/{world.hubspot}")
    body = page.inner_text("main")
    assert "host" in body and world.sandbox.hubspot_url in body  # settings, shown generically
    assert "stored encrypted, never shown" in body and "token-a" not in page.content()
    assert "Recent runs" in body and "schedule" in body
    shot(page, "03-connection")


def test_pause_resume_sync_now_and_plan(page: Any, world: World) -> None:
    sign_in(page, world, "operator")
    page.goto(f"/console/connections/{world.salesforce}")
    page.click("button:has-text('Pause')")
    assert "is paused" in flash(page)
    assert world.rows(ConnectionRow, id=world.salesforce)[0].state == "paused"
    assert page.locator("button:has-text('Sync now')").count() == 0
    page.click("button:has-text('Resume')")
    assert "active again" in flash(page)
    assert world.rows(ConnectionRow, id=world.salesforce)[0].state == "active"

    queued = world.queued()
    page.click("button:has-text('Sync now')")
    assert "queued for a worker" in flash(page)
    assert world.queued() == queued + 1
    actions = {a.action for a in world.rows(AuditEvent, subject=world.salesforce)}
    assert {"connection_paused", "connection_resumed", "sync_requested"} <= actions

    # a CRM user edits a company: the plan shows the billing update it would make
    world.sandbox.hubspot.edit(world.companies[7], {"city": "Trondheim"})
    page.goto(f"/console/connections/{world.hubspot}")
    page.click("a:has-text('Plan')")
    page.wait_for_url(f"**/console/connections/{world.hubspot}/plan")
    updates = page.locator("#plan-billing_updates")
    assert "Trondheim" in updates.inner_text()
    assert "address.city" in updates.inner_text()
    shot(page, "04-plan")
    # its button runs that sync: queued for a worker, as Sync now does
    queued = world.queued()
    page.click("button:has-text('Run this sync now')")
    assert "queued for a worker" in flash(page)
    page.wait_for_url(f"**/console/connections/{world.hubspot}")
    assert world.queued() == queued + 1


def test_resolve_conflicts(page: Any, world: World) -> None:
    sign_in(page, world, "operator")
    page.click("nav >> text=Conflicts")
    page.wait_for_url("**/console/conflicts")
    page.select_option("select[name=field]", "customer_name")
    page.wait_for_url("**field=customer_name**")
    cards = page.locator("article.conflict")
    assert cards.count() == 3
    first = cards.first
    text = first.inner_text()
    assert "base (last agreed)" in text and "billing" in text and "CRM" in text
    assert "only in letter case" in text  # the match rule's explanation
    assert "normalized rule" in text
    shot(page, "05-conflicts")

    # the conflict's own page: the three values, why, and the resolve form
    conflict_id = first.get_attribute("id").removeprefix("conflict-")
    conflict = world.rows(Conflict, id=conflict_id)[0]
    first.locator("a.detail").click()
    page.wait_for_url(f"**/console/conflicts/{conflict_id}")
    body = page.inner_text("main")
    assert "Waiting for an operator" in body and "only in letter case" in body
    assert str(conflict.billing_value) in body and str(conflict.crm_value) in body
    shot(page, "05b-conflict")
    page.click("article.conflict button:has-text('Keep CRM')")
    assert "Resolved: customer_name" in flash(page)
    page.wait_for_url(f"**/console/conflicts/{conflict_id}")
    body = page.inner_text("main")
    assert "Resolution" in body and "kept the CRM's value" in body
    assert "console:Otto Operator <otto@acme.example>" in body
    assert page.locator("button:has-text('Keep billing')").count() == 0  # nothing to do now
    shot(page, "05c-conflict-resolved")
    done = world.rows(Conflict, id=conflict_id)[0]
    assert done.status == "resolved" and done.resolution == "crm"
    assert done.resolved_by == "console:Otto Operator <otto@acme.example>"
    page.goto("/console/conflicts?field=customer_name")
    assert page.locator("article.conflict").count() == 2

    # set a value of one's own: written to both sides
    second = page.locator("article.conflict").first
    second_id = second.get_attribute("id").removeprefix("conflict-")
    crm_id = world.rows(Conflict, id=second_id)[0].crm_id
    second.locator("input[name=value]").fill("Agreed Name Ltd")
    second.locator("button:has-text('Set value')").click()
    assert "Agreed Name Ltd" in flash(page)
    assert world.sandbox.hubspot.read(crm_id)["properties"]["name"] == "Agreed Name Ltd"

    # a filtered set at once: both city conflicts, keeping the CRM's value
    page.goto("/console/conflicts?field=address.city")
    assert page.locator("article.conflict").count() == 2
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("form.bulk button:has-text('Keep CRM')")
    assert "Resolved 2 conflict(s)" in flash(page)
    assert open_conflicts(world, field="address.city") == []
    assert len(open_conflicts(world, field="customer_name")) == 1  # left for other tests

    # the customer's page: record, links, contacts and the audit trail with the name
    page.goto(f"/console/customers/{conflict.customer_id}")
    body = page.inner_text("main")
    assert "acme-hubspot" in body and conflict.crm_id in body  # its link
    assert "Contacts" in body
    assert "conflict resolved" in body and "Otto Operator" in body
    shot(page, "06-customer")


def test_retry_a_failure(page: Any, world: World) -> None:
    sign_in(page, world, "operator")
    page.click("nav >> text=Failures")
    rows = page.locator("table.failures tbody tr")
    assert rows.count() == 2
    assert "validation" in rows.first.inner_text()
    assert page.locator("button:has-text('Retry all 2 shown')").count() == 1
    shot(page, "07-failures")

    failure_id = rows.first.get_attribute("id").removeprefix("failure-")
    failure = world.rows(RecordFailure, id=failure_id)[0]
    rows.first.locator("a").first.click()
    page.wait_for_url(f"**/console/failures/{failure_id}")
    body = page.inner_text("main")
    assert failure.error_message in body  # the CRM's own words
    assert "phone_number" in body  # the payload
    shot(page, "08-failure")

    page.click("button:has-text('Retry')")
    assert "Retried 1: 1 recovered, 0 still failing" in flash(page)
    assert world.rows(RecordFailure, id=failure_id)[0].status != "open"
    assert len(open_failures(world)) == 1
    phone = failure.payload["fields"]["phone_number"]
    assert world.sandbox.hubspot.read(str(failure.crm_id))["properties"]["phone"] == phone
    trail = world.rows(AuditEvent, action="failure_retried")
    assert [a.actor for a in trail] == ["console:Otto Operator <otto@acme.example>"]


def test_runs_list_and_detail(page: Any, world: World) -> None:
    sign_in(page, world, "viewer")
    page.click("nav >> text=Runs")
    assert page.locator("#runs tbody tr").count() >= 3
    shot(page, "09-runs")
    run = a_run(world, world.org)
    page.goto(f"/console/runs/{run.id}")
    body = page.inner_text("main")
    assert "API calls per step" in body and "reading accounts / companies" in body
    assert "pulled" in body and "Counters" in body
    shot(page, "10-run")
    page.click("nav >> text=Customers")
    external_id = world.companies[7]  # a customer no other test renames
    page.fill("input[name=q]", external_id)
    page.click("button:has-text('Find')")
    page.wait_for_url(f"**q={external_id}**")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1 and external_id in rows.first.inner_text()
    shot(page, "10b-customers")


def test_a_viewer_sees_but_cannot_act(page: Any, world: World) -> None:
    sign_in(page, world, "viewer")
    assert page.locator("button:has-text('Sync now')").count() == 0
    assert page.locator("button:has-text('Pause')").count() == 0
    page.goto("/console/conflicts")
    assert page.locator("article.conflict").count() >= 1
    assert page.locator("button:has-text('Keep billing')").count() == 0
    assert page.locator("form.bulk").count() == 0
    shot(page, "11-viewer-conflicts")
    page.goto("/console/failures")
    assert page.locator("table.failures tbody tr").count() >= 1
    assert page.locator("button:has-text('Retry')").count() == 0
    shot(page, "11b-viewer-failures")
    # a hand-made request with the page's own CSRF token is refused too
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(
        f"/console/connections/{world.hubspot}/pause", form={"csrf_token": token}
    )
    assert answer.status == 403
    assert world.rows(ConnectionRow, id=world.hubspot)[0].state == "active"


def test_another_organisations_pages_answer_404(page: Any, world: World) -> None:
    sign_in(page, world, "other")
    assert page.locator("article[data-connection='globex-hubspot']").count() == 1
    assert page.locator("article[data-connection='acme-hubspot']").count() == 0
    answer = page.goto(f"/console/customers/{a_customer(world, world.org).id}")
    assert answer is not None and answer.status == 404
    assert "no such customer" in page.inner_text("main")
    shot(page, "12-not-found")
    for path in (
        f"/console/connections/{world.hubspot}",
        f"/console/runs/{a_run(world, world.org).id}",
    ):
        answer = page.goto(path)
        assert answer is not None and answer.status == 404


def test_an_admin_adds_an_operator(page: Any, world: World) -> None:
    sign_in(page, world, "admin")
    page.click("nav >> text=Operators")
    page.fill("form.grid-form input[name=email]", "new.operator@acme.example")
    page.fill("form.grid-form input[name=name]", "Nora New")
    page.click("form.grid-form button:has-text('Add')")
    link = page.locator("#one-time-link").input_value()
    assert link.startswith(f"{world.base}/console/set-password#")
    assert "new.operator@acme.example" in page.inner_text("table.list")
    shot(page, "13-operators")

    # the link, opened in a browser without a session, sets the password
    page.context.clear_cookies()
    page.goto(link)
    assert page.locator("#token").input_value() == link.split("#", 1)[1]
    shot(page, "14-set-password")
    page.fill("input[name=password]", "nora's own passphrase")
    page.fill("input[name=confirm]", "nora's own passphrase")
    page.click("button:has-text('Set password')")
    assert "Password set" in flash(page)
    world.emails["nora"] = "new.operator@acme.example"
    sign_in(page, world, "nora", "nora's own passphrase")
    assert "Nora New" in page.inner_text("header")


def test_a_failed_run_and_a_pause_by_a_crm_limit_as_the_console_shows_them(
    page: Any, world: World
) -> None:
    """Globex's HubSpot connection: a run HubSpot refuses (its token expired) and then a
    pause because the CRM's daily allowance is spent, until a given time. Its admin sees
    both on the Connections page and the run's page, and a resume ends the pause."""
    engine = world.engine()
    try:
        world.sandbox.hubspot.set_faults(expired_token=True)
        try:
            failed = sync_connection(
                engine, world.settings, world.other_connection, trigger="operator"
            )
        finally:
            world.sandbox.hubspot.clear_faults()
        assert failed.status == "failed" and failed.error and failed.run_id
        with transaction(engine) as session:
            row = session.get(ConnectionRow, world.other_connection)
            assert row is not None
            pause_for_limit(
                row, utcnow() + timedelta(hours=5), "You have reached your daily limit."
            )
    finally:
        engine.dispose()
    sign_in(page, world, "other")
    card = page.locator("article[data-connection='globex-hubspot']")
    text = card.inner_text()
    assert "paused_by_limit" in text and "by a CRM limit until" in text
    assert "You have reached your daily limit." in text
    assert "when the CRM's allowance returns" in text  # the next run
    assert re.search(r"Last run\s+failed", text), text
    assert card.locator("button:has-text('Sync now')").count() == 0
    shot(page, "15-paused-by-limit")

    card.locator(f"a[href='/console/runs/{failed.run_id}']").click()
    page.wait_for_url(f"**/console/runs/{failed.run_id}")
    body = page.inner_text("main")
    assert "Error" in body and failed.error.splitlines()[0][:60] in body
    assert "API calls per step" in body
    shot(page, "16-run-failed")

    page.goto("/console/connections")
    card.locator("button:has-text('Resume')").click()
    assert "active again" in flash(page)
    assert world.rows(ConnectionRow, id=world.other_connection)[0].state == "active"
    assert "by a CRM limit" not in card.inner_text()


def test_an_operator_of_two_organisations_chooses_one_at_sign_in(page: Any, world: World) -> None:
    """One e-mail, an operator account in Acme and in Globex with the same password: the
    sign-in asks which organisation, and the console is then that organisation's only."""
    email = "mo.both@example.org"
    engine = world.engine()
    try:
        with transaction(engine) as session:
            for org, role in ((world.org, "viewer"), (world.other_org, "operator")):
                new = operators.add_operator(session, org, email, role, name="Mo Both", by="test")
                operators.set_password(session, new.token, PASSWORD)
    finally:
        engine.dispose()
    page.goto("/console/sign-in")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    assert "choose one" in page.inner_text("main")
    choices = page.locator("select[name=organisation] option").all_inner_texts()
    assert sorted(choices) == ["Acme Billing", "Globex Billing"]
    shot(page, "01b-sign-in-choose-organisation")
    page.fill("input[name=password]", PASSWORD)
    page.select_option("select[name=organisation]", label="Globex Billing")
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/console/connections")
    header = page.inner_text("header")
    assert "Globex Billing" in header and "Mo Both" in header and "operator" in header.lower()
    assert page.locator("article[data-connection='globex-hubspot']").count() == 1
    assert page.locator("article[data-connection='acme-hubspot']").count() == 0


def test_a_resolved_conflict_is_on_the_audit_page_with_the_operators_name(
    page: Any, world: World
) -> None:
    """Globex's admin resolves a conflict of its own (a phone number changed on both sides
    since the last sync, so Acme's queue is left as the other tests need it), then finds it
    on the organisation's audit page, filtered to themself: their name, the customer and
    the conflict linked, the value kept. Acme's actions are not there."""
    company = world.companies[4]
    engine = world.engine()
    try:
        with transaction(engine) as session:
            customer_id = session.scalar(
                select(LinkRow.customer_id).where(
                    LinkRow.connection_id == world.other_connection, LinkRow.crm_id == company
                )
            )
            assert customer_id is not None
            update_customer(
                session, world.other_org, customer_id, CustomerPatch(phone_number="+15550199")
            )
        world.sandbox.hubspot.edit(company, {"phone": "+15550288"})
        result = sync_connection(engine, world.settings, world.other_connection, trigger="operator")
        assert result.status == "succeeded", result.error
    finally:
        engine.dispose()
    sign_in(page, world, "other")
    page.goto("/console/conflicts?field=phone_number")
    card = page.locator("article.conflict")
    assert card.count() == 1 and "+15550288" in card.inner_text()
    conflict_id = card.get_attribute("id").removeprefix("conflict-")
    card.locator("button:has-text('Keep billing')").click()
    assert "Resolved: phone_number" in flash(page)

    page.click("nav >> text=Audit")
    page.wait_for_url("**/console/audit")
    page.select_option("select[name=actor]", "console:Olga Other <olga@globex.example>")
    page.wait_for_url("**actor=**")
    rows = page.locator("table.audit tbody tr")
    newest = rows.first
    text = newest.inner_text()
    assert newest.get_attribute("data-action") == "conflict_resolved"
    assert "Olga Other <olga@globex.example>" in text and "resolved a conflict" in text
    assert "+15550199" in text and "billing" in text  # the value kept, and how
    assert newest.locator(f"a[href='/console/conflicts/{conflict_id}']").count() == 1
    assert newest.locator(f"a[href='/console/customers/{customer_id}']").count() == 1
    assert all("Olga Other" in row for row in rows.all_inner_texts())
    password = page.locator("table.audit tr[data-action=operator_password_set]")
    assert "operator Olga Other <olga@globex.example>" in password.inner_text()
    assert "acme.example" not in page.inner_text("main")
    shot(page, "17-audit")
    # the conflict's link leads to it, resolved
    newest.locator(f"a[href='/console/conflicts/{conflict_id}']").click()
    page.wait_for_url(f"**/console/conflicts/{conflict_id}")
    assert "kept billing's value" in page.inner_text("main")
