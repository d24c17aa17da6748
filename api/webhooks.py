"""The webhook intake: HubSpot webhooks and Salesforce Outbound Messages.

    POST /webhooks/hubspot/{connection_id}      signature v3 (v1/v2 if the connection opts in)
    POST /webhooks/salesforce/{connection_id}   Outbound Message (secret in ?secret= or the
                                                X-Crmsync-Secret header; OrganizationId)
    POST /webhooks/{kind}/{connection_id}       any other installed connector (a plug-in):
                                                verified and parsed by that connector

Each request is verified by the connection's connector (``sync.inbox.receive_webhook``), its
events go into the inbox de-duplicated by event id, and the answer goes back at once; a
task then syncs only the records the events name, coalescing bursts. The URL that is
verified is the one the CRM called: ``CRMSYNC_PUBLIC_BASE_URL`` + the path and query.

Refusals, with nothing stored and nothing enqueued: 401 (bad or missing signature or
secret, stale timestamp, wrong organisation), 404 (no such connection of that CRM), 400
(malformed body), 413 (body over ``CRMSYNC_WEBHOOK_MAX_BYTES``). Errors are JSON
``{"detail": ...}``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import get_engine, get_settings
from connectors.base import WebhookRequest
from connectors.errors import WebhookRejected
from connectors.salesforce import ack_response
from sync import telemetry
from sync.crypto import SecretKeyMissing
from sync.inbox import Received, UnknownConnection, receive_webhook
from sync.settings import Settings
from tasks.enqueue import enqueue_inbox

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

ConnectionId = Annotated[str, Path(description="The connection's id (`crmsync connections list`).")]


async def _body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (without reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def public_url(settings: Settings, request: Request) -> str:
    """The URL the CRM called, as it saw it (behind a proxy: the configured base URL)."""
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


def _refused(
    kind: str, connection_id: str, code: int, reason: str, organisation_id: str = ""
) -> HTTPException:
    """Count and log a refusal; the error to raise. A connection that does not exist is
    labelled ``unknown`` (anyone can send any id: the label set must stay bounded)."""
    label = "unknown" if code == status.HTTP_404_NOT_FOUND else connection_id
    telemetry.webhook_refused(
        organisation_id=organisation_id,
        connection_id=label,
        crm=kind,
        status=code,
        reason=reason,
    )
    return HTTPException(code, reason)


async def _receive(
    kind: str, connection_id: str, request: Request, settings: Settings, engine: Engine
) -> Received:
    arrived = time.perf_counter()
    try:
        uuid.UUID(connection_id)
    except ValueError:
        raise _refused(
            kind, connection_id, status.HTTP_404_NOT_FOUND, f"no {kind} connection {connection_id}"
        ) from None
    try:
        body = await _body(request, settings.webhook_max_bytes)
    except HTTPException as error:
        raise _refused(kind, connection_id, error.status_code, str(error.detail)) from None
    webhook = WebhookRequest(
        method=request.method,
        url=public_url(settings, request),
        headers=dict(request.headers),
        body=body,
    )
    try:
        received = await run_in_threadpool(
            receive_webhook, engine, settings, kind, connection_id, webhook
        )
    except UnknownConnection as error:
        raise _refused(kind, connection_id, status.HTTP_404_NOT_FOUND, str(error)) from None
    except WebhookRejected as error:
        raise _refused(
            kind, connection_id, error.status, str(error), error.organisation_id
        ) from None
    except SecretKeyMissing as error:
        log.error("webhook for %s cannot be verified: %s", connection_id, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the server cannot read connection secrets"
        ) from None
    telemetry.webhook_received(
        organisation_id=received.organisation_id,
        connection_id=connection_id,
        crm=kind,
        seconds=time.perf_counter() - arrived,
        events=received.events,
        new_events=received.new_events,
    )
    if received.new_events:
        try:
            await run_in_threadpool(enqueue_inbox, settings, connection_id)
        except Exception:
            # the events are committed in the inbox: beat's dispatcher enqueues them later
            log.exception("could not enqueue the inbox of %s", connection_id)
    return received


@router.post(
    "/hubspot/{connection_id}",
    summary="Receive a HubSpot webhook",
    responses={
        401: {"description": "Bad or stale signature"},
        404: {"description": "No such HubSpot connection"},
        400: {"description": "Malformed body"},
        413: {"description": "Body too large"},
    },
)
async def hubspot_webhook(
    connection_id: ConnectionId,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> JSONResponse:
    """Verify a HubSpot webhook (signature v3 against the connection's client secret, 5
    minutes), store its events in the inbox and answer at once."""
    received = await _receive("hubspot", connection_id, request, settings, engine)
    return JSONResponse({"events": received.events, "new_events": received.new_events})


@router.post(
    "/salesforce/{connection_id}",
    summary="Receive a Salesforce Outbound Message",
    response_class=Response,
    responses={
        200: {"content": {"text/xml": {}}, "description": "The SOAP acknowledgement"},
        401: {"description": "Wrong secret or organisation"},
        404: {"description": "No such Salesforce connection"},
        400: {"description": "Malformed body"},
        413: {"description": "Body too large"},
    },
)
async def salesforce_outbound_message(
    connection_id: ConnectionId,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    """Verify an Outbound Message (the connection's secret and organisation), store its
    notifications in the inbox and answer with the SOAP Ack."""
    await _receive("salesforce", connection_id, request, settings, engine)
    return Response(ack_response(), media_type="text/xml; charset=utf-8")


@router.post(
    "/{kind}/{connection_id}",
    summary="Receive a webhook for a connector installed as a plug-in",
    responses={
        401: {"description": "Not authentic (as the connector judges)"},
        404: {"description": "No such connection of that kind"},
        400: {"description": "Malformed body"},
        413: {"description": "Body too large"},
    },
)
async def plugin_webhook(
    kind: Annotated[str, Path(description="The connector's key (`crmsync connectors list`).")],
    connection_id: ConnectionId,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> JSONResponse:
    """Verify a webhook with the connection's own connector (any installed one, e.g.
    Pipedrive's basic auth), store its events in the inbox and answer at once."""
    received = await _receive(kind, connection_id, request, settings, engine)
    return JSONResponse({"events": received.events, "new_events": received.new_events})
