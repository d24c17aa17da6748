"""The emulated Pipedrive REST API: the endpoints crmsync's Pipedrive connector uses, as
Pipedrive's API reference documents them.

====================================  =====================================================
GET  /api/v1/organizations            offset paging: ``start``, ``limit`` (at most 500),
                                      ``sort`` (``id ASC``, ``update_time ASC``); answers
                                      ``additional_data.pagination`` {start, limit,
                                      more_items_in_collection, next_start}; deleted ones
                                      are not listed
GET  /api/v1/organizations/{id}       one organization; a deleted (or merged-away) one
                                      with ``active_flag: false``; unknown: 404
PUT  /api/v1/organizations/{id}/merge ``{merge_with_id}``: ``id`` is merged into
                                      ``merge_with_id``, which keeps its values, gains
                                      the other's where it had none, and the persons;
                                      ``id`` is deleted. Answers the survivor with
                                      ``merge_what_id``
DELETE /api/v1/organizations/{id}     marks it deleted
GET  /api/v1/organizationFields       the field list (the describe), custom fields keyed
                                      by 40-character hashes
GET  /api/v1/persons                  offset paging, as organizations
GET  /api/v1/recents                  ``since_timestamp`` (UTC ``YYYY-MM-DD HH:MM:SS``;
                                      changes *after* it), ``items`` (organization,
                                      person), ``start``, ``limit``; oldest change first;
                                      deleted records included (``active_flag: false``)
GET  /api/v1/itemSearch/field         ``field_type=organizationField``, ``field_key``,
                                      ``term``, ``exact_match`` (case sensitive),
                                      ``return_item_ids``
POST /api/v1/webhooks                 ``subscription_url, event_action, event_object,
                                      http_auth_user, http_auth_password`` (version 1.0)
DELETE /api/v1/webhooks/{id}
POST  /api/v2/organizations           create: ``name``, ``address`` {parts}, ``custom_fields``
PATCH /api/v2/organizations/{id}      update; ``address`` is one field, set whole
====================================  =====================================================

Every answer is ``{"success": ..., "data": ..., "additional_data": ...}``; errors are
``{"success": false, "error": ..., "errorCode": ..., "error_info": ...}``. Every API answer
carries ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (the
2-second burst window); past the limit, 429 "Request over limit". Authentication: the
``x-api-token`` header (or ``api_token`` query parameter); anything else is 401.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from crmsync_pipedrive.emulator.store import ADDRESS_PARTS, Organization, parse_stamp

if TYPE_CHECKING:
    from crmsync_pipedrive.emulator import PipedriveEmulator

MAX_LIMIT = 500
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "success": False,
            "error": self.message,
            "errorCode": self.status,
            "error_info": ERROR_INFO,
            "data": None,
            "additional_data": None,
        }


Answer = tuple[int, dict[str, Any]]
Handler = Callable[["PipedriveEmulator", dict[str, str], dict[str, Any], re.Match[str]], Answer]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
        return handler

    return register


def dispatch(
    emulator: PipedriveEmulator, method: str, target: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Answer one API request (auth, faults and the rate limit are checked by the server)."""
    parts = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    for verb, pattern, handler in ROUTES:
        match = pattern.match(parts.path)
        if verb == method and match:
            try:
                payload = json.loads(body) if body else {}
            except ValueError:
                raise ApiError(400, "Invalid JSON in the request body") from None
            if not isinstance(payload, dict):
                raise ApiError(400, "The request body must be a JSON object")
            return handler(emulator, query, payload, match)
    raise ApiError(404, f"Unknown method {method} {parts.path}")


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None


def _page(items: list[Any], query: dict[str, str]) -> tuple[list[Any], dict[str, Any]]:
    start = max(0, _int(query, "start", 0))
    limit = _int(query, "limit", 100)
    if limit < 1 or limit > MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    chunk = items[start : start + limit]
    pagination: dict[str, Any] = {
        "start": start,
        "limit": limit,
        "more_items_in_collection": start + limit < len(items),
    }
    if pagination["more_items_in_collection"]:
        pagination["next_start"] = start + limit
    return chunk, pagination


def _ok(data: Any, additional: dict[str, Any] | None = None) -> Answer:
    answer: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        answer["additional_data"] = additional
    return 200, answer


def _sorted(orgs: list[Organization], sort: str | None) -> list[Organization]:
    if sort in (None, "", "id ASC"):
        return sorted(orgs, key=lambda o: o.id)
    if sort == "update_time ASC":
        return sorted(orgs, key=lambda o: (o.update_time, o.id))
    raise ApiError(400, f"Unsupported sort: {sort}")


@route("GET", r"/api/v1/organizations")
def list_organizations(em: PipedriveEmulator, q: dict[str, str], _: Any, __: Any) -> Answer:
    with em.store.lock:
        live = [o for o in em.store.organizations.values() if o.active]
        chunk, pagination = _page(_sorted(live, q.get("sort")), q)
        return _ok([o.v1() for o in chunk] or None, {"pagination": pagination})


def _org(em: PipedriveEmulator, raw: str) -> Organization:
    found = em.store.organizations.get(int(raw))
    if found is None:
        raise ApiError(404, "Organization not found")
    return found


@route("GET", r"/api/v1/organizations/(\d+)")
def get_organization(em: PipedriveEmulator, _: Any, __: Any, m: re.Match[str]) -> Answer:
    with em.store.lock:
        return _ok(_org(em, m.group(1)).v1())


@route("DELETE", r"/api/v1/organizations/(\d+)")
def delete_organization(em: PipedriveEmulator, _: Any, __: Any, m: re.Match[str]) -> Answer:
    with em.store.lock:
        org = _org(em, m.group(1))
        if not org.active:
            raise ApiError(404, "Organization not found")
        em.delete(str(org.id))
        return _ok({"id": org.id})


@route("PUT", r"/api/v1/organizations/(\d+)/merge")
def merge_organizations(
    em: PipedriveEmulator, _: Any, body: dict[str, Any], m: re.Match[str]
) -> Answer:
    with em.store.lock:
        loser = _org(em, m.group(1))
        try:
            survivor = _org(em, str(int(body.get("merge_with_id"))))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, "merge_with_id is required") from None
        if not (loser.active and survivor.active) or loser.id == survivor.id:
            raise ApiError(400, "Cannot merge these organizations")
        em.merge(str(survivor.id), str(loser.id))
        return _ok({**survivor.v1(), "merge_what_id": loser.id})


@route("GET", r"/api/v1/organizationFields")
def organization_fields(em: PipedriveEmulator, q: dict[str, str], _: Any, __: Any) -> Answer:
    chunk, pagination = _page(em.organization_fields(), q)
    return _ok(chunk, {"pagination": pagination})


@route("GET", r"/api/v1/persons")
def list_persons(em: PipedriveEmulator, q: dict[str, str], _: Any, __: Any) -> Answer:
    with em.store.lock:
        live = sorted((p for p in em.store.persons.values() if p.active), key=lambda p: p.id)
        chunk, pagination = _page(live, q)
        return _ok([em.person_v1(p) for p in chunk] or None, {"pagination": pagination})


@route("GET", r"/api/v1/recents")
def recents(em: PipedriveEmulator, q: dict[str, str], _: Any, __: Any) -> Answer:
    since_text = q.get("since_timestamp")
    if not since_text:
        raise ApiError(400, "since_timestamp is required")
    try:
        since = parse_stamp(since_text)
    except ValueError:
        raise ApiError(400, "since_timestamp must be YYYY-MM-DD HH:MM:SS") from None
    kinds = set((q.get("items") or "organization,person").split(","))
    with em.store.lock:
        changed: list[tuple[int, str, int, dict[str, Any]]] = []
        if "organization" in kinds:
            changed += [
                (o.update_time, "organization", o.id, o.v1())
                for o in em.store.organizations.values()
                if o.update_time > since
            ]
        if "person" in kinds:
            changed += [
                (p.update_time, "person", p.id, em.person_v1(p))
                for p in em.store.persons.values()
                if p.update_time > since
            ]
        changed.sort(key=lambda c: (c[0], c[1], c[2]))
        chunk, pagination = _page(changed, q)
        data = [{"item": item, "id": item_id, "data": record} for _, item, item_id, record in chunk]
        last = chunk[-1][3]["update_time"] if chunk else None
        return _ok(
            data or None,
            {
                "since_timestamp": since_text,
                "last_timestamp_on_page": last,
                "pagination": pagination,
            },
        )


@route("GET", r"/api/v1/itemSearch/field")
def search_field(em: PipedriveEmulator, q: dict[str, str], _: Any, __: Any) -> Answer:
    term, key = q.get("term", ""), q.get("field_key", "")
    if q.get("field_type") != "organizationField" or not key:
        raise ApiError(400, "field_type and field_key are required")
    exact = q.get("exact_match") in ("true", "1")
    if len(term) < (1 if exact else 2):
        raise ApiError(400, "term is too short")
    with em.store.lock:
        hits = [
            {"id": o.id, key: o.custom.get(key)}
            for o in sorted(em.store.organizations.values(), key=lambda o: o.id)
            if o.active
            and isinstance(o.custom.get(key), str)
            # "The search is case sensitive" (itemSearch/field, exact_match)
            and (o.custom[key] == term if exact else term in o.custom[key])
        ]
    chunk, pagination = _page(hits, q)
    return _ok(chunk, {"pagination": pagination})


@route("POST", r"/api/v1/webhooks")
def add_webhook(em: PipedriveEmulator, _: Any, body: dict[str, Any], __: Any) -> Answer:
    url = body.get("subscription_url")
    action, obj = body.get("event_action"), body.get("event_object")
    if not url or action not in ("added", "updated", "merged", "deleted", "*"):
        raise ApiError(400, "subscription_url and a valid event_action are required")
    if obj not in ("organization", "person", "*"):
        raise ApiError(400, "a valid event_object is required")
    hook = em.add_webhook(
        str(url), str(action), str(obj), body.get("http_auth_user"), body.get("http_auth_password")
    )
    return 201, {"status": "ok", "success": True, "data": hook.v1()}


@route("DELETE", r"/api/v1/webhooks/(\d+)")
def delete_webhook(em: PipedriveEmulator, _: Any, __: Any, m: re.Match[str]) -> Answer:
    with em.store.lock:
        if em.store.webhooks.pop(int(m.group(1)), None) is None:
            raise ApiError(404, "Webhook not found")
    return 200, {"status": "ok", "success": True}


def _v2_fields(em: PipedriveEmulator, body: dict[str, Any]) -> dict[str, Any]:
    """Check a v2 organization body: known keys, a name that is text, address parts."""
    allowed = {"name", "owner_id", "visible_to", "label_ids", "address", "custom_fields"}
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, f"Unknown parameter(s): {', '.join(sorted(unknown))}")
    if "name" in body and (not isinstance(body["name"], str) or not body["name"].strip()):
        raise ApiError(400, "name must be a non-empty string")
    address = body.get("address")
    if address is not None and (
        not isinstance(address, dict) or set(address) - {*ADDRESS_PARTS, "value"}
    ):
        raise ApiError(400, "address must be an object of address parts")
    customs = body.get("custom_fields") or {}
    known = {f["key"] for f in em.organization_fields()}
    wrong = set(customs) - known
    if wrong:
        raise ApiError(400, f"Unknown custom field(s): {', '.join(sorted(wrong))}")
    return body


@route("POST", r"/api/v2/organizations")
def add_organization(em: PipedriveEmulator, _: Any, body: dict[str, Any], __: Any) -> Answer:
    fields = _v2_fields(em, body)
    if "name" not in fields:
        raise ApiError(400, "name is required")
    em.check_record_error(None, fields)
    org = em.create_v2(fields)
    return _ok(org.v2())


@route("PATCH", r"/api/v2/organizations/(\d+)")
def update_organization(
    em: PipedriveEmulator, _: Any, body: dict[str, Any], m: re.Match[str]
) -> Answer:
    fields = _v2_fields(em, body)
    with em.store.lock:
        org = _org(em, m.group(1))
        if not org.active:
            raise ApiError(404, "Organization not found")
        em.check_record_error(org, fields)
        em.update_v2(org, fields)
        return _ok(org.v2())
