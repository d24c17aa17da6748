"""The console's audit page over plain HTTP, on PostgreSQL and SQLite: the organisation's
actions newest first with who did them, its filters and pages, every role reading it, and
another organisation's events never shown (its ids as filters answer 404)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sync.store.db import transaction
from sync.store.sync_repository import add_audits
from tests.console.conftest import World, a_customer
from tests.console.test_http import Visitor

OTTO = "Otto Operator &lt;otto@acme.example&gt;"
ROW = re.compile(r'<tr id="audit-(\d+)" data-action="([a-z_]+)">(.*?)</tr>', re.S)
#: the day the paging events were recorded on (long before anything else in the world)
DAY = datetime(2021, 3, 1, tzinfo=UTC)


@pytest.fixture
def visitor(world: World) -> Iterator[Visitor]:
    v = Visitor(world)
    yield v
    v.close()


def rows(html: str) -> list[tuple[int, str, str]]:
    return [(int(i), action, body) for i, action, body in ROW.findall(html)]


def token_of(visitor: Visitor, path: str) -> str:
    return visitor.csrf(path)


def test_the_page_lists_what_operators_did_newest_first_with_their_names(
    world: World, visitor: Visitor
) -> None:
    assert visitor.sign_in("operator").status_code == 303
    token = token_of(visitor, f"/console/connections/{world.salesforce}")
    for step in ("pause", "resume"):
        done = visitor.http.post(
            f"/console/connections/{world.salesforce}/{step}", data={"csrf_token": token}
        )
        assert done.status_code == 303
    page = visitor.http.get("/console/audit")
    assert page.status_code == 200
    assert '<a href="/console/audit" class="on">Audit</a>' in page.text
    listed = rows(page.text)
    assert [action for _, action, _ in listed[:2]] == ["connection_resumed", "connection_paused"]
    resumed = listed[0][2]
    assert OTTO in resumed and "resumed a connection" in resumed
    assert f'href="/console/connections/{world.salesforce}">acme-salesforce</a>' in resumed
    assert "from</span> <code" in resumed and "paused" in resumed  # the state it left
    # ids only grow downwards: newest first
    ids = [i for i, _, _ in listed]
    assert ids == sorted(ids, reverse=True)


def test_filters_by_who_what_and_connection(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("admin").status_code == 303
    token = token_of(visitor, f"/console/connections/{world.hubspot}")
    assert (
        visitor.http.post(
            f"/console/connections/{world.hubspot}/pause", data={"csrf_token": token}
        ).status_code
        == 303
    )
    assert (
        visitor.http.post(
            f"/console/connections/{world.hubspot}/resume", data={"csrf_token": token}
        ).status_code
        == 303
    )
    ada = "console:Ada Admin <ada@acme.example>"
    mine = rows(visitor.http.get("/console/audit", params={"actor": ada}).text)
    assert {a for _, a, _ in mine} >= {"connection_paused", "connection_resumed"}
    assert all("Ada Admin &lt;ada@acme.example&gt;" in body for _, _, body in mine)

    added = rows(visitor.http.get("/console/audit", params={"action": "operator_added"}).text)
    assert {a for _, a, _ in added} == {"operator_added"}
    shown = " ".join(body for _, _, body in added)
    for who in ("ada", "otto", "vera", "lena"):
        assert f"{who}@acme.example" in shown
    assert "olga@globex.example" not in shown  # Globex's operator: another organisation

    hubspot = rows(visitor.http.get("/console/audit", params={"connection": world.hubspot}).text)
    assert {a for _, a, _ in hubspot} >= {"connection_paused", "connection_resumed"}
    assert all(f"/console/connections/{world.hubspot}" in body for _, _, body in hubspot)
    assert "operator_added" not in {a for _, a, _ in hubspot}
    page = visitor.http.get(
        "/console/audit", params={"connection": world.hubspot, "action": "connection_paused"}
    )
    assert 'value="connection_paused" selected' in page.text
    assert {a for _, a, _ in rows(page.text)} == {"connection_paused"}


def record_paging_events(world: World, customer_id: str, count: int) -> list[str]:
    """``count`` CRM restores of one customer by the HubSpot sync, a minute apart on
    :data:`DAY`: the CRM ids, oldest first."""
    crm_ids = [f"restored-{world.backend}-{n:02d}" for n in range(count)]
    engine = world.engine()
    try:
        with transaction(engine) as session:
            add_audits(
                session,
                [
                    {
                        "organisation_id": world.org,
                        "actor": f"sync:{world.hubspot}",
                        "action": "crm_restored",
                        "subject": customer_id,
                        "detail": {"crm_id": crm_id},
                        "at": DAY + timedelta(minutes=n),
                    }
                    for n, crm_id in enumerate(crm_ids)
                ],
            )
    finally:
        engine.dispose()
    return crm_ids


def test_pages_of_fifty_by_customer_and_days(world: World, visitor: Visitor) -> None:
    customer = a_customer(world, world.org)
    crm_ids = record_paging_events(world, customer.id, 55)
    assert visitor.sign_in("viewer").status_code == 303
    query = {"customer": customer.id, "since": "2021-03-01", "until": "2021-03-01"}
    first = visitor.http.get("/console/audit", params=query)
    assert first.status_code == 200
    listed = rows(first.text)
    assert len(listed) == 50
    assert crm_ids[54] in listed[0][2] and crm_ids[5] in listed[-1][2]
    assert "sync of acme-hubspot" in listed[0][2] and "the CRM restored the record" in listed[0][2]
    assert f'href="/console/customers/{customer.id}"' in listed[0][2]
    older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert older is not None and 'rel="prev"' not in first.text
    second = visitor.http.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert crm_ids[4::-1] == [
        re.search(r"restored-[a-z]+-\d\d", body).group(0)  # type: ignore[union-attr]
        for _, _, body in rows(second.text)
    ]
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    # the day after holds none of them; the time range is the recorded moment's
    after = visitor.http.get("/console/audit", params={**query, "since": "2021-03-02", "until": ""})
    assert rows(after.text) == [] and "Nothing recorded that matches" in after.text
    before = visitor.http.get(
        "/console/audit", params={**query, "until": "2021-02-28", "since": ""}
    )
    assert rows(before.text) == []
    bad = visitor.http.get("/console/audit", params={"since": "yesterday"})
    assert bad.status_code == 400 and "must be a date" in bad.text
    assert visitor.http.get("/console/audit", params={"until": "9999-12-31"}).status_code == 200
    for page in ("0", "two", "1000001"):
        bad = visitor.http.get("/console/audit", params={"page": page})
        assert bad.status_code == 400 and "page must be a number" in bad.text, page


def test_a_viewer_reads_it_and_it_has_nothing_to_act_on(world: World, visitor: Visitor) -> None:
    assert visitor.sign_in("viewer").status_code == 303
    page = visitor.http.get("/console/audit")
    assert page.status_code == 200 and "Audit trail" in page.text
    assert page.text.count('method="post"') == 1  # signing out only
    assert "/console/operators" not in page.text  # operators' page is the admins'


def test_another_organisation_sees_none_of_it_and_its_ids_answer_404(
    world: World, visitor: Visitor
) -> None:
    customer = a_customer(world, world.org)
    assert visitor.sign_in("other").status_code == 303
    page = visitor.http.get("/console/audit")
    assert page.status_code == 200
    assert "olga@globex.example" in page.text  # their own: Olga's addition
    assert "acme.example" not in page.text and "acme-" not in page.text
    assert "restored-" not in page.text
    for query in ({"connection": world.hubspot}, {"customer": customer.id}):
        answer = visitor.http.get("/console/audit", params=query)
        assert answer.status_code == 404 and "no such" in answer.text
    # an Acme actor as a filter is only a name: it matches nothing of Globex's
    foreign = visitor.http.get(
        "/console/audit", params={"actor": "console:Otto Operator <otto@acme.example>"}
    )
    assert foreign.status_code == 200 and rows(foreign.text) == []
