"""The HTTP face of the emulator: HubSpot CRM v3 (+ v4 associations) and ``/_sandbox``.

Success statuses are exactly what hubspot-api-client 12's response maps expect (it returns
``None`` on any other, CRM_API_NOTES trap 3): create 201; batch create 201/207; batch
read/update/upsert 200/207; get, list, PATCH, search, merge 200; archive 204.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.hubspot.crm import (
    ASSOCIATION_TYPE_IDS,
    HUBSPOT_DEFINED_TYPES,
    TYPE_IDS,
    Portal,
    canonical_type,
)
from sandbox.hubspot.limits import MESSAGES, Limits
from sandbox.hubspot.store import SINGULAR, ObjectStore, Record, StoreError, iso, search

if TYPE_CHECKING:
    from sandbox.hubspot import HubSpotSandbox

Handler = Callable[[Request], Awaitable[Response]]

BATCH_MAX = 100


def _dumps(data: Any) -> bytes:
    # orjson: compact UTF-8 as json.dumps(ensure_ascii=False, separators=(",", ":")) writes
    # it, several times faster (a list page of 100 records is the bench's hottest answer)
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(data), status, headers, media_type="application/json;charset=utf-8")


def error_body(
    status: int,
    category: str,
    message: str,
    context: dict[str, list[str]] | None = None,
    sub_category: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        "errors": errors if errors is not None else [{"message": message}],
        "links": {},
    }
    if sub_category:
        body["subCategory"] = sub_category
    if context:
        body["context"] = context
    return body


def batch_error(
    category: str, message: str, ids: list[str], sub_category: str | None = None
) -> dict[str, Any]:
    """One entry of a 207's ``errors`` (the SDK's StandardError needs all these keys)."""
    err: dict[str, Any] = {
        "status": "error",
        "category": category,
        "message": message,
        "context": {"ids": ids},
        "errors": [{"message": message, "code": sub_category or category}],
        "links": {},
    }
    if sub_category:
        err["subCategory"] = sub_category
    return err


def _named_by_id(error: dict[str, Any]) -> dict[str, Any]:
    """A 207 error about one input named in its ``id``, its ``context`` left empty (the
    ``batch_errors_by_id`` fault)."""
    ids = (error.get("context") or {}).get("ids") or []
    if len(ids) != 1:
        return error
    return {**error, "id": str(ids[0]), "context": {}}


def _bare(result: dict[str, Any]) -> dict[str, Any]:
    """A batch write's result without what the references leave optional or empty: no
    ``objectWriteTraceId``, ``"properties": {}`` (the ``bare_write_results`` fault)."""
    bare = {k: v for k, v in result.items() if k != "objectWriteTraceId"}
    bare["properties"] = {}
    return bare


def _traced(result: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """A batch result carries its input's ``objectWriteTraceId``, so a client can match
    results to inputs when the id changed (a merged record's id resolves to the new one)."""
    if item.get("objectWriteTraceId") is not None:
        result["objectWriteTraceId"] = str(item["objectWriteTraceId"])
    return result


#: HubSpot's other standard object types. The sandbox's portal holds companies and contacts
#: only; its token is a private app's with the companies and contacts scopes (README), so
#: a call about any of these answers as HubSpot answers a token without the scope: 403
#: ``MISSING_SCOPES`` (an extractor that lists every type, e.g. meltano-tap-hubspot, then
#: skips them). An unknown type stays a 400.
UNGRANTED_OBJECT_TYPES = frozenset(
    {
        "deals", "leads", "line_items", "products", "tickets", "quotes", "goal_targets",
        "calls", "communications", "emails", "meetings", "notes", "postal_mail", "tasks",
    }
)  # fmt: skip


def missing_scopes(object_type: str, path: str) -> StoreError:
    """HubSpot's answer to a token that lacks the scope a call needs."""
    kind = "schemas" if path.startswith("/crm/v3/properties/") else "objects"
    scope = f"crm.{kind}.{object_type.lower()}.read"
    return StoreError(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. "
        "Read more about required scopes here: https://developers.hubspot.com/scopes.",
        {"requiredGranularScopes": [scope]},
    )


#: what HubSpot takes as an e-mail: RFC 2822 with no quoted local part, the domain ending
#: in a top-level domain (https://community.hubspot.com/t5/APIs-Integrations/contacts-integration-invalid-e-mails/td-p/833439)
_EMAIL = re.compile(r'^[^\s@"]+@[^\s@]+\.(?:[A-Za-z]{2,}|xn--[A-Za-z0-9-]+)$')


def check_email(email: str) -> None:
    """A contact e-mail HubSpot refuses: 400 ``VALIDATION_ERROR`` naming ``INVALID_EMAIL``."""
    if not _EMAIL.match(email.strip()):
        detail = json.dumps(
            [
                {
                    "isValid": False,
                    "message": f"Email address {email} is invalid",
                    "error": "INVALID_EMAIL",
                    "name": "email",
                }
            ]
        )
        raise StoreError(
            400,
            "VALIDATION_ERROR",
            f"Property values were not valid: {detail}",
            {"propertyName": ["email"]},
        )


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes"}


class Api:
    """Route handlers bound to one sandbox."""

    def __init__(self, sandbox: HubSpotSandbox) -> None:
        self.sb = sandbox
        self.portal: Portal = sandbox.portal
        self.limits = Limits(sandbox.time_zone)
        self.counts: Counter[str] = Counter()
        self.counts_lock = threading.Lock()
        self.shuffle = random.Random(sandbox.seed)

    # -- the wrapper every CRM API route goes through ------------------------------------

    def api(self, template: str, fn: Callable[[Request], Awaitable[Response]]) -> Handler:
        async def handler(request: Request) -> Response:
            key = f"{request.method} {template}"
            with self.counts_lock:
                self.counts[key] += 1
            fate, faults = self.sb.faults.take()
            verdict = self.limits.check(
                search=template.endswith("/search"),
                interval_ms=faults.rate_limit_interval_ms,
                daily_limit=faults.daily_limit,
                search_per_second=faults.search_per_second,
                count=fate != "rate",
            )
            headers = verdict.headers
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            if fate in ("hang", "stall"):
                generation = self.sb.faults.generation
                deadline = time.monotonic() + faults.hang_seconds
                while (
                    time.monotonic() < deadline
                    and generation == self.sb.faults.generation
                    and not self.sb.closing
                    and not (fate == "stall" and self.sb.faults.stall_lifted())
                ):
                    await asyncio.sleep(0.02)
            auth = request.headers.get("authorization", "")
            if fate == "auth" or not auth.startswith("Bearer ") or not auth[7:].strip():
                message = (
                    "The OAuth token used to make this call expired 2 minute(s) ago."
                    if fate == "auth"
                    else "Authentication credentials not found."
                )
                category = "EXPIRED_AUTHENTICATION" if fate == "auth" else "INVALID_AUTHENTICATION"
                return json_response(error_body(401, category, message), 401, headers)
            policy = faults.rate_limit_policy if fate == "rate" else verdict.policy
            if policy is not None:
                if fate != "rate":
                    self.sb.faults.note("limit")  # the portal's own limits, not a fault
                return self._rate_limited(
                    policy, headers, faults.retry_after, faults.retry_after_http_date
                )
            if fate == "error":
                status = faults.server_error_status
                return json_response(
                    error_body(
                        status, "INTERNAL_ERROR", "internal error (injected by the sandbox)"
                    ),
                    status,
                    headers,
                )
            try:
                response = await fn(request)
            except StoreError as exc:
                response = json_response(
                    error_body(
                        exc.status, exc.category, exc.message, exc.context, exc.sub_category
                    ),
                    exc.status,
                )
            except (ValueError, KeyError, TypeError) as exc:
                response = json_response(
                    error_body(
                        400,
                        "VALIDATION_ERROR",
                        f"Invalid input JSON on line 1: {exc!s}",
                    ),
                    400,
                )
            response.headers.update(headers)
            return response

        return handler

    @staticmethod
    def _rate_limited(
        policy: str, headers: dict[str, str], retry_after: float | None, http_date: bool = False
    ) -> Response:
        """A 429 as the usage guidelines show it; ``Retry-After`` only when a fault asks."""
        if headers:
            headers["X-HubSpot-RateLimit-Remaining"] = "0"
            headers["X-HubSpot-RateLimit-Secondly-Remaining"] = "0"
            if policy == "DAILY":
                headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
        if retry_after is not None and http_date:
            headers["Retry-After"] = formatdate(time.time() + retry_after, usegmt=True)
        elif retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        message = MESSAGES.get(policy, f"You have reached your {policy.lower()} limit.")
        body = error_body(429, "RATE_LIMITS", message)
        body["errorType"] = "RATE_LIMIT"
        body["policyName"] = policy
        return json_response(body, 429, headers)

    async def api_usage(self, request: Request) -> Response:
        """``GET /account-info/v3/api-usage/daily/private-apps``."""
        return json_response({"results": [self.limits.usage(self.sb.faults.faults.daily_limit)]})

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    async def body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise StoreError(
                400, "VALIDATION_ERROR", "Invalid input JSON: could not parse"
            ) from None

    def store(self, request: Request, name: str = "object_type") -> ObjectStore:
        object_type = request.path_params[name]
        if object_type.lower() in UNGRANTED_OBJECT_TYPES:
            raise missing_scopes(object_type, request.url.path)
        return self.portal.store(object_type)

    @staticmethod
    def props_param(request: Request) -> list[str] | None:
        values: list[str] = []
        for v in request.query_params.getlist("properties"):
            values.extend(p for p in v.split(",") if p)
        return values or None

    @staticmethod
    def assoc_param(request: Request) -> list[str] | None:
        values: list[str] = []
        for v in request.query_params.getlist("associations"):
            values.extend(p for p in v.split(",") if p)
        return values or None

    def _parse_id(self, value: Any) -> int:
        try:
            return int(str(value))
        except ValueError:
            raise StoreError(
                404, "OBJECT_NOT_FOUND", "resource not found", {"id": [str(value)]}
            ) from None

    def _batch_response(
        self,
        results: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        ok_status: int,
        started: str,
        written: bool = False,
    ) -> Response:
        self.shuffle.shuffle(results)  # HubSpot does not promise input order
        if written and self.sb.faults.faults.bare_write_results:
            results = [_bare(r) for r in results]
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso(int(time.time() * 1000)),
        }
        if errors:
            if self.sb.faults.faults.batch_errors_by_id:
                errors = [_named_by_id(e) for e in errors]
            body["numErrors"] = len(errors)
            body["errors"] = errors
            return json_response(body, 207)
        return json_response(body, ok_status)

    def _inputs(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise StoreError(400, "VALIDATION_ERROR", "Invalid input JSON: inputs is required")
        if len(inputs) > BATCH_MAX:
            raise StoreError(
                400,
                "VALIDATION_ERROR",
                f"Batch input of {len(inputs)} exceeds the limit of {BATCH_MAX} inputs",
                sub_category="BATCH_TOO_LARGE",
            )
        return [i if isinstance(i, dict) else {"id": i} for i in inputs]

    def _injected(self, *keys: str | None) -> dict[str, Any] | None:
        hit = self.sb.faults.record_error(*keys)
        if hit is None:
            return None
        key, kind = hit
        if kind == "duplicate":
            return batch_error(
                "VALIDATION_ERROR",
                f"A company with that value already exists: duplicate value for input {key}",
                [key],
                "DUPLICATE_VALUE",
            )
        if kind == "not_found":
            return batch_error("OBJECT_NOT_FOUND", f"Object {key} not found", [key])
        return batch_error(
            "VALIDATION_ERROR",
            f'Property values were not valid: [{{"isValid":false,"message":"{key}: '
            f'value was not valid (injected)","error":"INVALID_PROPERTY_VALUE","name":"phone"}}]',
            [key],
            "INVALID_PROPERTY_VALUE",
        )

    def _shaped(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record as the faults shape it (``omit_archived_at``: no ``archivedAt``)."""
        if self.sb.faults.faults.omit_archived_at:
            record.pop("archivedAt", None)
        return record

    # -- objects -------------------------------------------------------------------------

    async def list_objects(self, request: Request) -> Response:
        store = self.store(request)
        q = request.query_params
        limit = int(q.get("limit") or 10)
        if limit > 100 or limit < 1:
            raise StoreError(400, "VALIDATION_ERROR", "limit must be between 1 and 100")
        props, assoc = self.props_param(request), self.assoc_param(request)
        other = self.portal.other(store)
        with self.portal.lock:
            records, nxt = store.page(q.get("after"), limit, _bool(q.get("archived")))
            results = [self._shaped(store.to_json(r, props, assoc, other)) for r in records]
        body: dict[str, Any] = {"results": results}
        if nxt is not None:
            link = f"{self.sb.public_url}/crm/v3/objects/{store.object_type}?after={nxt}"
            body["paging"] = {"next": {"after": nxt, "link": link}}
        return json_response(body)

    async def get_object(self, request: Request) -> Response:
        store = self.store(request)
        q = request.query_params
        with self.portal.lock:
            rec = store.find(
                request.path_params["object_id"],
                q.get("idProperty"),
                archived=_bool(q.get("archived")),
            )
            data = store.to_json(
                rec, self.props_param(request), self.assoc_param(request), self.portal.other(store)
            )
        return json_response(self._shaped(data))

    def _check_emails(self, store: ObjectStore, inputs: list[dict[str, Any]]) -> None:
        """Contacts only: a create with an invalid e-mail refuses the request (400,
        :func:`check_email`); one whose e-mail a contact has (or an earlier input of the
        same batch), 409 ``CONFLICT`` (:meth:`ObjectStore.email_owner`)."""
        if store.emails is None:
            return
        taken: set[str] = set()
        with self.portal.lock:
            for item in inputs:
                email = (item.get("properties") or {}).get("email")
                if not isinstance(email, str) or not email.strip():
                    continue
                check_email(email)
                owner = store.email_owner(email)
                if owner is not None or email.strip().lower() in taken:
                    existing = f" Existing ID: {owner}" if owner is not None else ""
                    raise StoreError(409, "CONFLICT", f"Contact already exists.{existing}")
                taken.add(email.strip().lower())

    @staticmethod
    def _check_email_change(store: ObjectStore, rec: Record, props: dict[str, Any]) -> None:
        """A contact's e-mail changed to another contact's: 409 ``CONFLICT`` (a per-input
        error in a batch update)."""
        email = props.get("email")
        if store.emails is not None and isinstance(email, str) and email.strip():
            check_email(email)
        owner = store.email_owner(email, but=rec.id)
        if owner is not None:
            raise StoreError(409, "CONFLICT", f"Contact already exists. Existing ID: {owner}")

    async def create_object(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        self._check_associations(store, body.get("associations") or [])
        self._check_emails(store, [body])
        rec = self.portal.create(store.object_type, body.get("properties") or {}, "INTEGRATION")
        self._create_associations(store, rec, body.get("associations") or [])
        with self.portal.lock:
            data = store.to_json(rec, list((body.get("properties") or {}).keys()))
        return json_response(data, 201)

    def _create_associations(
        self, store: ObjectStore, rec: Record, assocs: list[dict[str, Any]]
    ) -> None:
        other = self.portal.other(store)
        for a in assocs:
            to_id = self._parse_id((a.get("to") or {}).get("id"))
            self.portal.associate(store.object_type, rec.id, other.object_type, to_id)

    def _check_associations(self, store: ObjectStore, assocs: Any) -> None:
        """An input's ``associations`` as the create references document them: a list of
        ``{"to": {"id"}, "types": [{"associationCategory", "associationTypeId"}]}``, where a
        ``HUBSPOT_DEFINED`` type id must be one HubSpot defines for the pair (contact to
        company: 1 primary, 279 unlabeled; company to contact: 2 primary, 280 unlabeled —
        developers.hubspot.com/docs/guides/api/crm/associations/associations-v4). A bad one
        fails the request (400), checked before anything is created."""
        other = self.portal.other(store)
        defined = HUBSPOT_DEFINED_TYPES.get((store.object_type, other.object_type), set())
        if not isinstance(assocs, list):
            raise StoreError(400, "VALIDATION_ERROR", "Invalid input JSON: associations")
        for a in assocs:
            to = a.get("to") if isinstance(a, dict) else None
            types = a.get("types") if isinstance(a, dict) else None
            if not isinstance(to, dict) or to.get("id") in (None, ""):
                raise StoreError(400, "VALIDATION_ERROR", "associations[].to.id is required")
            if not isinstance(types, list) or not types:
                raise StoreError(400, "VALIDATION_ERROR", "associations[].types is required")
            for t in types:
                category = t.get("associationCategory") if isinstance(t, dict) else None
                type_id = t.get("associationTypeId") if isinstance(t, dict) else None
                if category not in ("HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"):
                    raise StoreError(
                        400, "VALIDATION_ERROR", f"unknown associationCategory {category!r}"
                    )
                if category == "HUBSPOT_DEFINED" and type_id not in defined:
                    raise StoreError(
                        400,
                        "VALIDATION_ERROR",
                        f"associationTypeId {type_id!r} is not a HUBSPOT_DEFINED type from "
                        f"{store.object_type} to {other.object_type}",
                    )

    async def update_object(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        q = request.query_params
        with self.portal.lock:
            rec = store.find(request.path_params["object_id"], q.get("idProperty"))
            self._check_email_change(store, rec, body.get("properties") or {})
        self.portal.update(store.object_type, rec, body.get("properties") or {}, "INTEGRATION")
        with self.portal.lock:
            data = store.to_json(rec, list((body.get("properties") or {}).keys()))
        return json_response(data)

    async def archive_object(self, request: Request) -> Response:
        store = self.store(request)
        with self.portal.lock:
            rec = store.records.get(self._parse_id(request.path_params["object_id"]))
        if rec is not None:
            self.portal.archive(store.object_type, rec, "INTEGRATION")
        return Response(status_code=204)

    async def merge(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        winner = self.portal.merge(
            store.object_type,
            self._parse_id(body.get("primaryObjectId")),
            self._parse_id(body.get("objectIdToMerge")),
            "INTEGRATION",
        )
        with self.portal.lock:
            data = store.to_json(winner, None)
        return json_response(data)

    async def search(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        props = body.get("properties") or None
        with self.portal.lock:
            found = search(store, body)
            results = [store.to_json(r, props) for r in found["records"]]
        out: dict[str, Any] = {"total": found["total"], "results": results}
        if found["after"] is not None:
            out["paging"] = {"next": {"after": found["after"], "link": None}}
        return json_response(out)

    # -- batch ---------------------------------------------------------------------------

    async def batch_read(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        started = iso(int(time.time() * 1000))
        inputs = self._inputs(body)
        id_property = body.get("idProperty")
        archived = _bool(request.query_params.get("archived"))
        props = body.get("properties") or None
        results: list[dict[str, Any]] = []
        missing: list[str] = []
        seen: set[int] = set()
        with self.portal.lock:
            for item in inputs:
                key = str(item.get("id"))
                try:
                    rec = store.find(key, id_property, archived=archived)
                except StoreError:
                    missing.append(key)
                    continue
                if rec.id not in seen:
                    seen.add(rec.id)
                    results.append(self._shaped(store.to_json(rec, props)))
        errors = []
        if missing:
            errors.append(
                batch_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {store.singular()} objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    missing,
                )
            )
        return self._batch_response(results, errors, 200, started)

    async def batch_create(self, request: Request) -> Response:
        """Batch create. "For the object APIs' batch create endpoints, you can enable multi
        status responses that include partial failures ... include a unique
        ``objectWriteTraceId`` value for each input": then a refused input is a 207 error
        whose ``context`` is ``{"objectWriteTraceId": [...]}`` and the others are made;
        without, one refused input (a bad property 400, a taken e-mail 409) refuses the
        batch (https://developers.hubspot.com/docs/api-reference/error-handling)."""
        store = self.store(request)
        body = await self.body(request)
        started = iso(int(time.time() * 1000))
        results, errors = [], []
        inputs = self._inputs(body)
        for item in inputs:
            self._check_associations(store, item.get("associations") or [])
        traces = [item.get("objectWriteTraceId") for item in inputs]
        multi = (
            self.sb.faults.faults.multi_status
            and all(t not in (None, "") for t in traces)
            and len({str(t) for t in traces}) == len(traces)
        )
        if not multi:
            for item in inputs:
                store.check_properties(item.get("properties") or {})
            self._check_emails(store, inputs)
        for item in inputs:
            props = item.get("properties") or {}
            # a contact is named by its e-mail (record faults are keyed by it)
            err = self._injected(props.get("crmsync_id"), props.get("name"), props.get("email"))
            if err is None:
                try:
                    if multi:
                        self._check_emails(store, [item])
                    rec = self.portal.create(store.object_type, props, "INTEGRATION")
                except StoreError as exc:
                    if not multi:
                        raise
                    err = batch_error(exc.category, exc.message, [], exc.sub_category)
            if err is not None:
                if multi:
                    err["context"] = {"objectWriteTraceId": [str(item["objectWriteTraceId"])]}
                errors.append(err)
                continue
            self._create_associations(store, rec, item.get("associations") or [])
            with self.portal.lock:
                results.append(_traced(store.to_json(rec, list(props.keys())), item))
        return self._batch_response(results, errors, 201, started, written=True)

    async def batch_update(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        started = iso(int(time.time() * 1000))
        results, errors = [], []
        inputs = self._inputs(body)
        for item in inputs:
            props = item.get("properties") or {}
            store.check_properties(props)  # a bad property fails the batch
            email = props.get("email")
            if store.emails is not None and isinstance(email, str) and email.strip():
                check_email(email)  # so does a value HubSpot does not take
        ids = [str(item.get("id")) for item in inputs]
        if len(set(ids)) != len(ids):
            raise StoreError(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input")
        for item in inputs:
            key = str(item.get("id"))
            props = item.get("properties") or {}
            err = self._injected(key, props.get("crmsync_id"), props.get("email"))
            if err is not None:
                errors.append(err)
                continue
            try:
                with self.portal.lock:
                    rec = store.find(key, item.get("idProperty"))
                    self._check_email_change(store, rec, props)
                self.portal.update(store.object_type, rec, props, "INTEGRATION")
            except StoreError as exc:
                errors.append(batch_error(exc.category, exc.message, [key], exc.sub_category))
                continue
            with self.portal.lock:
                results.append(_traced(store.to_json(rec, list(props.keys())), item))
        return self._batch_response(results, errors, 200, started, written=True)

    async def batch_upsert(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        started = iso(int(time.time() * 1000))
        results, errors = [], []
        inputs = self._inputs(body)
        keys = [str(item.get("id")) for item in inputs]
        if len(set(keys)) != len(keys):
            raise StoreError(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input")
        for item in inputs:
            id_property = item.get("idProperty")
            if not id_property or id_property not in store.unique:
                raise StoreError(
                    400,
                    "VALIDATION_ERROR",
                    f"idProperty {id_property!r} is not a unique property of {store.object_type}",
                )
            store.check_properties(item.get("properties") or {})
        for item in inputs:
            key = str(item.get("id"))
            id_property = str(item["idProperty"])
            props = dict(item.get("properties") or {})
            err = self._injected(key, props.get("name"))
            if err is not None:
                errors.append(err)
                continue
            props[id_property] = key
            try:
                with self.portal.lock:
                    existing = store.unique[id_property].get(key)
                if existing is None:
                    rec = self.portal.create(store.object_type, props, "INTEGRATION")
                    new = True
                else:
                    rec = store.records[existing]
                    self.portal.update(store.object_type, rec, props, "INTEGRATION")
                    new = False
            except StoreError as exc:
                errors.append(batch_error(exc.category, exc.message, [key], exc.sub_category))
                continue
            with self.portal.lock:
                data = store.to_json(rec, list(props.keys()))
            data["new"] = new
            results.append(_traced(data, item))
        return self._batch_response(results, errors, 200, started, written=True)

    async def batch_archive(self, request: Request) -> Response:
        store = self.store(request)
        body = await self.body(request)
        for item in self._inputs(body):
            with self.portal.lock:
                rec = store.records.get(self._parse_id(item.get("id")))
            if rec is not None:
                self.portal.archive(store.object_type, rec, "INTEGRATION")
        return Response(status_code=204)

    # -- properties ----------------------------------------------------------------------

    async def properties(self, request: Request) -> Response:
        store = self.store(request)
        results = [p.to_json(store.object_type) for p in store.properties.values()]
        return json_response({"results": results})

    async def property(self, request: Request) -> Response:
        store = self.store(request)
        name = request.path_params["name"]
        if name not in store.properties:
            raise StoreError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        return json_response(store.properties[name].to_json(store.object_type))

    # -- associations (v4, and v3 batch) -------------------------------------------------

    def _assoc_types(
        self, from_store: ObjectStore, to_store: ObjectStore, rec: Record, to_id: int
    ) -> list[dict[str, Any]]:
        """v4 association types of one pair: unlabeled (279 / 280), and Primary (1 / 2) for
        a contact's primary company
        (developers.hubspot.com/docs/guides/api/crm/associations/associations-v4)."""
        pair = (from_store.object_type, to_store.object_type)
        primary = ASSOCIATION_TYPE_IDS[pair]
        unlabeled = min(HUBSPOT_DEFINED_TYPES[pair] - {primary})
        types: list[dict[str, Any]] = []
        if from_store.is_primary(rec, to_store.records[to_id]):
            label = (
                "Primary" if pair == ("contacts", "companies") else "Contact with Primary Company"
            )
            types.append({"category": "HUBSPOT_DEFINED", "typeId": primary, "label": label})
        types.append({"category": "HUBSPOT_DEFINED", "typeId": unlabeled, "label": None})
        return types

    async def v4_list(self, request: Request) -> Response:
        from_store, to_store = self.store(request), self.store(request, "to_type")
        with self.portal.lock:
            rec = from_store.get(self._parse_id(request.path_params["object_id"]))
            results = [
                {
                    "toObjectId": i,
                    "associationTypes": self._assoc_types(from_store, to_store, rec, i),
                }
                for i in rec.links
                if i in to_store.records and to_store.records[i].archived_ms is None
            ]
        return json_response({"results": results})

    async def v4_create_default(self, request: Request) -> Response:
        from_store, to_store = self.store(request), self.store(request, "to_type")
        from_id = self._parse_id(request.path_params["object_id"])
        to_id = self._parse_id(request.path_params["to_id"])
        self.portal.associate(from_store.object_type, from_id, to_store.object_type, to_id)
        now = iso(int(time.time() * 1000))
        type_id = ASSOCIATION_TYPE_IDS[(from_store.object_type, to_store.object_type)]
        result = {
            "from": {"id": str(from_id)},
            "to": {"id": str(to_id)},
            "associationSpec": {
                "associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": type_id,
            },
        }
        return json_response(
            {"status": "COMPLETE", "results": [result], "startedAt": now, "completedAt": now}
        )

    async def v4_create(self, request: Request) -> Response:
        from_store, to_store = self.store(request), self.store(request, "to_type")
        from_id = self._parse_id(request.path_params["object_id"])
        to_id = self._parse_id(request.path_params["to_id"])
        self.portal.associate(from_store.object_type, from_id, to_store.object_type, to_id)
        return json_response(
            {
                "fromObjectTypeId": TYPE_IDS[from_store.object_type],
                "fromObjectId": from_id,
                "toObjectTypeId": TYPE_IDS[to_store.object_type],
                "toObjectId": to_id,
                "labels": [],
            },
            201,
        )

    async def v4_archive(self, request: Request) -> Response:
        from_store, to_store = self.store(request), self.store(request, "to_type")
        self.portal.dissociate(
            from_store.object_type,
            self._parse_id(request.path_params["object_id"]),
            to_store.object_type,
            self._parse_id(request.path_params["to_id"]),
        )
        return Response(status_code=204)

    async def assoc_batch(self, request: Request) -> Response:
        version = request.url.path.split("/")[2]  # v3 / v4
        action = request.path_params["action"]
        from_store = self.portal.store(request.path_params["from_type"])
        to_store = self.portal.store(request.path_params["to_type"])
        body = await self.body(request)
        started = iso(int(time.time() * 1000))
        inputs = self._inputs(body)
        if action == "read":
            results: list[dict[str, Any]] = []
            missing: list[str] = []
            with self.portal.lock:
                for item in inputs:
                    key = str(item.get("id") if "id" in item else item)
                    rec = from_store.records.get(self._parse_id(key))
                    links = [
                        i
                        for i in (rec.links if rec is not None and rec.archived_ms is None else [])
                        if i in to_store.records and to_store.records[i].archived_ms is None
                    ]
                    if rec is None or not links:
                        missing.append(key)
                        continue
                    if version == "v4":
                        to = [
                            {
                                "toObjectId": i,
                                "associationTypes": self._assoc_types(from_store, to_store, rec, i),
                            }
                            for i in links
                        ]
                    else:
                        one, other = (
                            SINGULAR[from_store.object_type],
                            SINGULAR[to_store.object_type],
                        )
                        kind = f"{one}_to_{other}"
                        to = []
                        for i in links:
                            if from_store.is_primary(rec, to_store.records[i]):
                                to.append({"id": str(i), "type": kind})
                            to.append({"id": str(i), "type": f"{kind}_unlabeled"})
                    results.append({"from": {"id": key}, "to": to})
            errors = [
                batch_error(
                    "OBJECT_NOT_FOUND",
                    f"No {SINGULAR[to_store.object_type]} is associated with "
                    f"{SINGULAR[from_store.object_type]} {key}.",
                    [key],
                    "crm.associations.NO_ASSOCIATIONS_FOUND",
                )
                for key in missing
            ]
            return self._batch_response(results, errors, 200, started)
        pairs = [
            (
                self._parse_id((i.get("from") or {}).get("id")),
                self._parse_id((i.get("to") or {}).get("id")),
            )
            for i in inputs
        ]
        if action == "archive":
            for a, b in pairs:
                self.portal.dissociate(from_store.object_type, a, to_store.object_type, b)
            return Response(status_code=204)
        results = []
        primary_type = ASSOCIATION_TYPE_IDS.get((from_store.object_type, to_store.object_type))
        for (a, b), item in zip(pairs, inputs, strict=True):
            # v4 labelled create: the primary type among the types makes the company the
            # contact's primary one (its earlier primary company stays, unlabeled)
            types = item.get("types") if version == "v4" and action == "create" else None
            primary = any(
                isinstance(t, dict) and t.get("associationTypeId") == primary_type
                for t in types or []
            )
            self.portal.associate(from_store.object_type, a, to_store.object_type, b, primary)
            if version == "v4" and action == "create":
                results.append(
                    {
                        "fromObjectTypeId": TYPE_IDS[from_store.object_type],
                        "fromObjectId": a,
                        "toObjectTypeId": TYPE_IDS[to_store.object_type],
                        "toObjectId": b,
                        "labels": [],
                    }
                )
            elif version == "v4":
                type_id = ASSOCIATION_TYPE_IDS[(from_store.object_type, to_store.object_type)]
                results.append(
                    {
                        "from": {"id": str(a)},
                        "to": {"id": str(b)},
                        "associationSpec": {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": type_id,
                        },
                    }
                )
            else:
                kind = f"{SINGULAR[from_store.object_type]}_to_{SINGULAR[to_store.object_type]}"
                results.append({"from": {"id": str(a)}, "to": {"id": str(b)}, "type": kind})
        return self._batch_response(results, [], 201 if action == "create" else 200, started)


class Control:
    """``/_sandbox/...``: the same operations as :class:`HubSpotSandbox`'s methods."""

    def __init__(self, sandbox: HubSpotSandbox) -> None:
        self.sb = sandbox

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw else {}

    def _wrap(self, fn: Callable[[Request], Awaitable[Any]], status: int = 200) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                result = await fn(request)
            except StoreError as exc:
                return json_response(error_body(exc.status, exc.category, exc.message), exc.status)
            except (ValueError, KeyError, TypeError) as exc:
                return json_response(error_body(400, "VALIDATION_ERROR", str(exc)), 400)
            return json_response(result, status)

        return handler

    def routes(self) -> list[Route]:
        sb = self.sb

        async def reset(request: Request) -> Any:
            sb.reset()
            return {"ok": True}

        async def seed(request: Request) -> Any:
            body = await self._json(request)
            return {"ids": sb.seed_companies(int(body.get("count", 0)))}

        async def create(request: Request) -> Any:
            body = await self._json(request)
            return {
                "id": sb.create(request.path_params["object_type"], body.get("properties") or {})
            }

        async def read(request: Request) -> Any:
            return sb.read(request.path_params["object_id"], request.path_params["object_type"])

        async def edit(request: Request) -> Any:
            body = await self._json(request)
            sb.edit(
                request.path_params["object_id"],
                body.get("properties") or {},
                request.path_params["object_type"],
            )
            return {"ok": True}

        async def archive(request: Request) -> Any:
            sb.archive(request.path_params["object_id"], request.path_params["object_type"])
            return {"ok": True}

        async def restore(request: Request) -> Any:
            sb.restore(request.path_params["object_id"], request.path_params["object_type"])
            return {"ok": True}

        async def merge(request: Request) -> Any:
            body = await self._json(request)
            survivor = sb.merge(
                str(body["winner"]), str(body["loser"]), request.path_params["object_type"]
            )
            return {"id": survivor}

        async def touch(request: Request) -> Any:
            body = await self._json(request)
            ids = body.get("ids")
            count = sb.touch(ids, body.get("ms"), request.path_params["object_type"])
            return {"touched": count}

        async def requests_get(request: Request) -> Any:
            return {"counts": sb.request_counts(), "total": sb.api_calls()}

        async def requests_reset(request: Request) -> Any:
            sb.reset_counts()
            return {"ok": True}

        async def faults_get(request: Request) -> Any:
            return sb.faults.snapshot()

        async def faults_set(request: Request) -> Any:
            sb.set_faults(**(await self._json(request)))
            return sb.faults.snapshot()

        async def faults_clear(request: Request) -> Any:
            sb.clear_faults()
            return sb.faults.snapshot()

        async def new_day(request: Request) -> Any:
            sb.new_day()
            return {"ok": True}

        async def settings_set(request: Request) -> Any:
            body = await self._json(request)
            unknown = set(body) - {"merge_keeps_primary_id", "address3"}
            if unknown:
                raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
            if "merge_keeps_primary_id" in body:
                sb.set_merges_keep_primary_id(bool(body["merge_keeps_primary_id"]))
            if "address3" in body:
                sb.set_address3(bool(body["address3"]))
            return {
                "merge_keeps_primary_id": sb.portal.merge_keeps_primary_id,
                "address3": "address3" in sb.portal.companies.properties,
            }

        async def webhooks_set(request: Request) -> Any:
            cfg = sb.configure_webhooks(**(await self._json(request)))
            return {k: v for k, v in vars(cfg).items() if k != "client_secret"}

        async def webhooks_flush(request: Request) -> Any:
            body = await self._json(request)
            timeout = float(body.get("timeout", 10))
            done = await asyncio.get_running_loop().run_in_executor(
                None, sb.flush_webhooks, timeout
            )
            return {"flushed": done}

        async def webhooks_deliveries(request: Request) -> Any:
            return [
                {"attempt": d.attempt, "status": d.status, "events": d.events}
                for d in list(sb.webhooks.deliveries)
            ]

        w = self._wrap
        p = "/_sandbox"
        return [
            Route(f"{p}/reset", w(reset), methods=["POST"]),
            Route(f"{p}/seed", w(seed), methods=["POST"]),
            Route(f"{p}/requests", w(requests_get), methods=["GET"]),
            Route(f"{p}/requests", w(requests_reset), methods=["DELETE"]),
            Route(f"{p}/faults", w(faults_get), methods=["GET"]),
            Route(f"{p}/faults", w(faults_set), methods=["PUT", "POST"]),
            Route(f"{p}/faults", w(faults_clear), methods=["DELETE"]),
            Route(f"{p}/day", w(new_day), methods=["POST"]),
            Route(f"{p}/settings", w(settings_set), methods=["PUT"]),
            Route(f"{p}/webhooks", w(webhooks_set), methods=["PUT", "POST"]),
            Route(f"{p}/webhooks/flush", w(webhooks_flush), methods=["POST"]),
            Route(f"{p}/webhooks/deliveries", w(webhooks_deliveries), methods=["GET"]),
            Route(f"{p}/objects/{{object_type}}", w(create, 201), methods=["POST"]),
            Route(f"{p}/objects/{{object_type}}/touch", w(touch), methods=["POST"]),
            Route(f"{p}/objects/{{object_type}}/merge", w(merge), methods=["POST"]),
            Route(f"{p}/objects/{{object_type}}/{{object_id}}", w(read), methods=["GET"]),
            Route(f"{p}/objects/{{object_type}}/{{object_id}}", w(edit), methods=["PATCH"]),
            Route(f"{p}/objects/{{object_type}}/{{object_id}}", w(archive), methods=["DELETE"]),
            Route(
                f"{p}/objects/{{object_type}}/{{object_id}}/restore", w(restore), methods=["POST"]
            ),
        ]


def build_app(sandbox: HubSpotSandbox) -> Starlette:
    api = Api(sandbox)
    sandbox.api = api
    a = api.api
    o = "/crm/v3/objects/{object_type}"
    routes = [
        Route(f"{o}/batch/read", a(f"{o}/batch/read", api.batch_read), methods=["POST"]),
        Route(f"{o}/batch/create", a(f"{o}/batch/create", api.batch_create), methods=["POST"]),
        Route(f"{o}/batch/update", a(f"{o}/batch/update", api.batch_update), methods=["POST"]),
        Route(f"{o}/batch/upsert", a(f"{o}/batch/upsert", api.batch_upsert), methods=["POST"]),
        Route(f"{o}/batch/archive", a(f"{o}/batch/archive", api.batch_archive), methods=["POST"]),
        Route(f"{o}/search", a(f"{o}/search", api.search), methods=["POST"]),
        Route(f"{o}/merge", a(f"{o}/merge", api.merge), methods=["POST"]),
        Route(o, a(o, api.list_objects), methods=["GET"]),
        Route(o, a(o, api.create_object), methods=["POST"]),
        Route(f"{o}/{{object_id}}", a(f"{o}/{{id}}", api.get_object), methods=["GET"]),
        Route(f"{o}/{{object_id}}", a(f"{o}/{{id}}", api.update_object), methods=["PATCH"]),
        Route(f"{o}/{{object_id}}", a(f"{o}/{{id}}", api.archive_object), methods=["DELETE"]),
        Route(
            "/crm/v3/properties/{object_type}",
            a("/crm/v3/properties/{object_type}", api.properties),
            methods=["GET"],
        ),
        Route(
            "/account-info/v3/api-usage/daily/private-apps",
            a("/account-info/v3/api-usage/daily/private-apps", api.api_usage),
            methods=["GET"],
        ),
        Route(
            "/crm/v3/properties/{object_type}/{name}",
            a("/crm/v3/properties/{object_type}/{name}", api.property),
            methods=["GET"],
        ),
    ]
    v4 = "/crm/v4/objects/{object_type}/{object_id}/associations"
    routes += [
        Route(
            f"{v4}/default/{{to_type}}/{{to_id}}",
            a(f"{v4}/default/{{to_type}}/{{to_id}}", api.v4_create_default),
            methods=["PUT"],
        ),
        Route(f"{v4}/{{to_type}}", a(f"{v4}/{{to_type}}", api.v4_list), methods=["GET"]),
        Route(
            f"{v4}/{{to_type}}/{{to_id}}",
            a(f"{v4}/{{to_type}}/{{to_id}}", api.v4_create),
            methods=["PUT"],
        ),
        Route(
            f"{v4}/{{to_type}}/{{to_id}}",
            a(f"{v4}/{{to_type}}/{{to_id}}", api.v4_archive),
            methods=["DELETE"],
        ),
    ]
    for version in ("v3", "v4"):
        b = f"/crm/{version}/associations/{{from_type}}/{{to_type}}/batch/{{action}}"
        routes.append(Route(b, a(b, api.assoc_batch), methods=["POST"]))
        if version == "v4":
            d = f"/crm/{version}/associations/{{from_type}}/{{to_type}}/batch/associate/default"
            routes.append(Route(d, a(d, _default_action(api)), methods=["POST"]))
    routes += Control(sandbox).routes()
    return Starlette(routes=routes)


def _default_action(api: Api) -> Handler:
    async def handler(request: Request) -> Response:
        request.path_params["action"] = "default"
        return await api.assoc_batch(request)

    return handler


__all__ = ["build_app", "canonical_type"]
