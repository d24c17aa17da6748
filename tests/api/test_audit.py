"""``GET /audit``: the organisation's audit trail over HTTP with its API key, on both stores:
what the key did, named by its prefix, newest first; the filters and pages; another
organisation sees none of it and its connection or customer as a filter is 404."""

from __future__ import annotations

from tests.api.test_operations import Ops, ops, sandbox

__all__ = ["ops", "sandbox"]  # the operations tests' world: a conflict and its connection


def test_what_the_key_did_is_listed_newest_first_by_its_prefix(ops: Ops) -> None:
    (conflict,) = ops.get("/conflicts")
    headers = ops.tenant.headers
    resolved = ops.client.post(
        f"/conflicts/{conflict['id']}/resolve", json={"keep": "crm"}, headers=headers
    )
    assert resolved.status_code == 200, resolved.text
    queued = ops.client.post(f"/connections/{ops.connection_id}/sync", headers=headers)
    assert queued.status_code == 202, queued.text

    events = ops.get("/audit")
    assert [e["action"] for e in events] == ["sync_requested", "conflict_resolved"]
    started, done = events
    prefix = ops.tenant.api_key[:8]
    assert done["who"] == started["who"] == f"API key {prefix}"
    assert done["actor"] == f"api:key {prefix}…" and ops.tenant.api_key not in str(events)
    assert (done["what"], started["what"]) == ("resolved a conflict", "started a sync")
    kinds = {t["kind"]: t for t in done["targets"]}
    assert kinds["customer"]["id"] == ops.customer_id
    assert kinds["conflict"] == {"kind": "conflict", "id": conflict["id"], "label": "customer_name"}
    assert done["detail"]["value"] == "CRM Name" and done["detail"]["resolution"] == "crm"
    assert started["targets"] == [
        {"kind": "connection", "id": ops.connection_id, "label": "hubspot"}
    ]


def test_filters_and_pages(ops: Ops) -> None:
    (conflict,) = ops.get("/conflicts")
    headers = ops.tenant.headers
    ops.client.post(f"/conflicts/{conflict['id']}/resolve", json={"keep": "crm"}, headers=headers)
    for _ in range(3):
        ops.client.post(f"/connections/{ops.connection_id}/sync", headers=headers)
    everything = ops.get("/audit")
    assert len(everything) == 4
    # a connection by name, as the other routes take it: its syncs and its conflict
    assert ops.get("/audit", connection="hubspot") == everything
    assert ops.get("/audit", customer=ops.customer_id) == everything[-1:]
    assert [e["action"] for e in ops.get("/audit", action="sync_requested")] == [
        "sync_requested"
    ] * 3
    assert ops.get("/audit", actor=everything[0]["actor"]) == everything
    assert ops.get("/audit", actor="cli:someone") == []
    # pages: newest first, ``limit`` from ``offset``
    assert ops.get("/audit", limit=2) == everything[:2]
    assert ops.get("/audit", limit=2, offset=2) == everything[2:]
    assert ops.get("/audit", offset=4) == []
    # a time range: [since, until)
    newest = everything[0]["at"]
    assert ops.get("/audit", since=newest) == everything[:1]
    assert ops.get("/audit", until=newest) == everything[1:]
    # a moment without a time zone is UTC, as the store writes them
    assert newest.endswith("Z")
    assert ops.get("/audit", since=newest.removesuffix("Z")) == everything[:1]
    too_many = ops.client.get("/audit", headers=headers, params={"limit": 201})
    assert too_many.status_code == 422


def test_another_organisation_sees_none_of_it(ops: Ops) -> None:
    ops.client.post(f"/connections/{ops.connection_id}/sync", headers=ops.tenant.headers)
    assert len(ops.get("/audit")) == 1
    headers = ops.other.headers
    theirs = ops.client.get("/audit", headers=headers)
    assert theirs.status_code == 200 and theirs.json() == []
    for params in ({"connection": "hubspot"}, {"connection": ops.connection_id},
                   {"customer": ops.customer_id}):  # fmt: skip
        answer = ops.client.get("/audit", headers=headers, params=params)
        assert answer.status_code == 404, params
    assert ops.client.get("/audit").status_code == 401
