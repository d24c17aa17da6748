"""The emulator behaves as Pipedrive's API reference says, point by point, over real HTTP
(plain httpx here, not the connector): what the connector relies on is what Pipedrive
documents, not what the connector happens to assume."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY, PipedriveEmulator
from crmsync_pipedrive.emulator.store import stamp

from connectors.testing import WebhookReceiver


@pytest.fixture
def api(emulator: PipedriveEmulator) -> Iterator[httpx.Client]:
    emulator.reset()
    with httpx.Client(
        base_url=emulator.url + "/api", headers={"x-api-token": emulator.api_token}
    ) as client:
        yield client


def test_offset_paging_by_start_and_more_items_in_collection(
    emulator: PipedriveEmulator, api: httpx.Client
) -> None:
    # Pagination: start and limit (at most 500); additional_data.pagination carries
    # more_items_in_collection and, when there are more, next_start
    ids = emulator.seed(7, persons_each=0)
    seen: list[str] = []
    start: int | None = 0
    while start is not None:
        body = api.get("/v1/organizations", params={"start": start, "limit": 3}).json()
        page = body["additional_data"]["pagination"]
        assert page["start"] == start and page["limit"] == 3
        seen += [str(o["id"]) for o in body["data"]]
        start = page.get("next_start") if page["more_items_in_collection"] else None
        assert ("next_start" in page) == page["more_items_in_collection"]
    assert seen == ids
    assert api.get("/v1/organizations", params={"limit": 501}).status_code == 400


def test_recents_are_the_changes_after_since_timestamp_oldest_first(
    emulator: PipedriveEmulator, api: httpx.Client
) -> None:
    a, b, c = emulator.seed(3, persons_each=0)
    later = int(time.time()) + 30
    emulator.touch([c], later)
    emulator.touch([a], later + 1)
    emulator.delete(b)  # the clock never goes back: after the stamps above
    body = api.get(
        "/v1/recents", params={"since_timestamp": stamp(later - 1), "items": "organization"}
    ).json()
    changed = [(r["item"], str(r["id"]), r["data"]["active_flag"]) for r in body["data"]]
    assert changed == [
        ("organization", c, True),
        ("organization", a, True),
        ("organization", b, False),
    ]
    assert (
        body["additional_data"]["last_timestamp_on_page"] == body["data"][-1]["data"]["update_time"]
    )
    strictly_after = api.get(
        "/v1/recents", params={"since_timestamp": stamp(later), "items": "organization"}
    ).json()
    assert [str(r["id"]) for r in strictly_after["data"]] == [a, b]
    assert api.get("/v1/recents", params={"since_timestamp": "yesterday"}).status_code == 400


def test_merge_keeps_merge_with_id_and_deletes_the_other(
    emulator: PipedriveEmulator, api: httpx.Client
) -> None:
    # PUT /v1/organizations/{id}/merge {merge_with_id}: {id} is merged into merge_with_id,
    # whose values win; its empty fields take the other's; persons move to it
    keep = emulator.create("Keep Ltd", {"locality": "Berlin"})
    gone = emulator.create("Gone Ltd", {"locality": "Paris", "postal_code": "75001"})
    person = emulator.add_person("Ann", "ann@example.com", gone)
    answer = api.put(f"/v1/organizations/{gone}/merge", json={"merge_with_id": int(keep)})
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert str(data["id"]) == keep and str(data["merge_what_id"]) == gone
    assert data["address_locality"] == "Berlin" and data["address_postal_code"] == "75001"
    loser = api.get(f"/v1/organizations/{gone}").json()["data"]
    assert loser["active_flag"] is False
    persons = api.get("/v1/persons").json()["data"]
    assert [(str(p["id"]), str(p["org_id"]["value"])) for p in persons] == [(person, keep)]
    assert api.put(f"/v1/organizations/{gone}/merge", json={}).status_code == 400


def test_every_answer_has_rate_limit_headers_and_a_burst_over_the_limit_is_429(
    emulator: PipedriveEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(burst_limit=3)
    answers = [api.get("/v1/organizations") for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    first = answers[0].headers
    assert first["x-ratelimit-limit"] == "3" and first["x-ratelimit-remaining"] == "2"
    assert 1 <= int(first["x-ratelimit-reset"]) <= 2  # the 2-second window
    refused = answers[3]
    if refused.status_code == 429:  # unless the 2-second window turned in between
        assert refused.json()["error"] == "Request over limit"
        assert refused.json()["success"] is False and refused.json()["errorCode"] == 429
        assert refused.headers["x-ratelimit-remaining"] == "0"
    emulator.set_faults(burst_limit=80, rate_limit_next=1, retry_after=3)
    told = api.get("/v1/organizations")
    assert told.status_code == 429 and told.headers["retry-after"] == "3"


def test_the_api_token_is_required(emulator: PipedriveEmulator) -> None:
    with httpx.Client(base_url=emulator.url + "/api") as anonymous:
        refused = anonymous.get("/v1/organizations")
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized access"
        wrong = anonymous.get("/v1/organizations", headers={"x-api-token": "guess"})
        assert wrong.status_code == 401
        query = anonymous.get("/v1/organizations", params={"api_token": emulator.api_token})
        assert query.status_code == 200


def test_v2_writes_set_the_address_whole_and_refuse_unknown_fields(
    emulator: PipedriveEmulator, api: httpx.Client
) -> None:
    made = api.post(
        "/v2/organizations",
        json={
            "name": "Written Ltd",
            "address": {"route": "Main St 1", "locality": "Bonn"},
            "custom_fields": {CRMSYNC_ID_KEY: "bill-1"},
        },
    ).json()["data"]
    assert (
        made["address"]["locality"] == "Bonn" and made["custom_fields"][CRMSYNC_ID_KEY] == "bill-1"
    )
    changed = api.patch(f"/v2/organizations/{made['id']}", json={"address": {"route": "Side St 2"}})
    assert changed.json()["data"]["address"]["locality"] is None  # one field: set whole
    assert api.post("/v2/organizations", json={"address": {}}).status_code == 400  # no name
    unknown = api.post("/v2/organizations", json={"name": "X", "custom_fields": {"nope": 1}})
    assert unknown.status_code == 400
    assert api.patch("/v2/organizations/999999", json={"name": "Y"}).status_code == 404

    def search(term: str) -> list[Any]:
        params = {
            "term": term,
            "field_type": "organizationField",
            "field_key": CRMSYNC_ID_KEY,
            "exact_match": "true",
            "return_item_ids": "true",
        }
        found: list[Any] = api.get("/v1/itemSearch/field", params=params).json()["data"]
        return found

    assert [h["id"] for h in search("bill-1")] == [made["id"]]
    assert search("BILL-1") == [] and search("bill-") == []  # exact and case sensitive


def test_webhooks_v1_are_posted_with_basic_auth(
    emulator: PipedriveEmulator, api: httpx.Client
) -> None:
    with WebhookReceiver("/hook", status=200) as receiver:
        created = api.post(
            "/v1/webhooks",
            json={
                "subscription_url": receiver.url,
                "event_action": "*",
                "event_object": "organization",
                "http_auth_user": "me",
                "http_auth_password": "secret",
            },
        )
        assert created.status_code == 201
        org = emulator.create("Hooked")
        emulator.edit(org, name="Hooked 2")
        assert emulator.flush_webhooks(10)
        deliveries: list[Any] = list(receiver.requests)
    assert len(deliveries) == 2
    auth = {k.lower(): v for k, v in deliveries[0].headers.items()}["authorization"]
    assert auth == "Basic " + base64.b64encode(b"me:secret").decode()
    import json

    events = [json.loads(d.body) for d in deliveries]
    assert [e["event"] for e in events] == ["added.organization", "updated.organization"]
    assert events[1]["meta"]["action"] == "updated" and str(events[1]["meta"]["id"]) == org
    assert events[1]["previous"]["name"] == "Hooked" and events[1]["current"]["name"] == "Hooked 2"
