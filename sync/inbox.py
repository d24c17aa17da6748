"""The webhook inbox: verify, store de-duplicated, and later sync only what events name.

Receiving is quick and writes only the inbox, so the CRM gets its answer at once; the
events are synced by a task that takes every pending event of the connection (coalescing a
burst for the same records into one sync of each record).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from connectors.base import RateGate, WebhookRequest
from connectors.errors import WebhookRejected
from sync import telemetry
from sync.connections import open_connector
from sync.engine import RunResult, sync_records
from sync.errors import UnknownConnection as UnknownConnection
from sync.fencing import Fence
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction


@dataclass(frozen=True)
class Received:
    connection_id: str
    events: int
    new_events: int
    organisation_id: str = ""


def receive_webhook(
    engine: Engine, settings: Settings, kind: str, connection_id: str, request: WebhookRequest
) -> Received:
    """Verify a webhook for the connection and put its events in the inbox.

    Raises :class:`UnknownConnection` (404) or ``WebhookRejected`` (401 / 400 / 413).
    """
    if len(request.body) > settings.webhook_max_bytes:
        raise WebhookRejected(413, f"body over {settings.webhook_max_bytes} bytes")
    with transaction(engine) as session:
        connection = repo.get_connection(session, connection_id)
        if connection is None or connection.kind != kind:
            raise UnknownConnection(f"no {kind} connection {connection_id}")
        connector = open_connector(settings, connection)
        try:
            connector.verify_webhook(request)
            events = connector.parse_webhook(request.body)
        except WebhookRejected as refused:
            refused.organisation_id = connection.organisation_id
            raise
        rows = [
            {
                "organisation_id": connection.organisation_id,
                "connection_id": connection.id,
                "event_key": event.key,
                "kind": event.kind,
                "object_type": event.object_type,
                "crm_id": event.crm_id,
                "payload": {
                    "merged_into": event.merged_into,
                    "merged_ids": list(event.merged_ids),
                },
            }
            for event in events
        ]
        # the same event inside one delivery counts once
        unique = list({row["event_key"]: row for row in rows}.values())
        new = repo.add_inbound_events(session, unique)
        organisation_id = connection.organisation_id
    return Received(connection_id, len(events), len(new), organisation_id)


def process_inbox(
    engine: Engine,
    settings: Settings,
    connection_id: str,
    *,
    gate: RateGate | None = None,
    fence: Fence | None = None,
) -> RunResult | None:
    """Sync the records named by the connection's pending events; mark them handled.
    ``fence`` is the caller's claim on the connection's inbox lock."""
    with transaction(engine) as session:
        events = list(repo.pending_events(session, connection_id, limit=5000))
        connection = repo.get_connection(session, connection_id)
        kind = connection.kind if connection is not None else ""
    if not events:
        return None
    crm_ids: list[str] = []
    merges: dict[str, str] = {}
    for event in events:
        if event.object_type != "customer":
            continue  # contacts follow on the connection's next incremental sync
        crm_ids.append(event.crm_id)
        survivor = event.payload.get("merged_into")
        if survivor:
            crm_ids.append(survivor)
            for loser in event.payload.get("merged_ids") or []:
                if loser != survivor:
                    crm_ids.append(loser)
                    merges[loser] = survivor
    result = sync_records(
        engine,
        settings,
        connection_id,
        crm_ids=list(dict.fromkeys(crm_ids)),
        merges=merges,
        gate=gate,
        fence=fence,
    )
    if result.status == "succeeded":
        with transaction(engine) as session:
            repo.mark_events_handled(session, [e.id for e in events])
        telemetry.webhook_events_synced(
            organisation_id=events[0].organisation_id,
            connection_id=connection_id,
            crm=kind,
            received_at=(e.received_at for e in events),
        )
    return result
