"""``/metrics``: every crmsync metric in Prometheus' text format.

This process's own figures (the webhook intake; and in ``crmsync up``, where the worker runs
here too, the runs, records and CRM calls), plus the gauges read at each scrape: open
conflicts and failures from the store, queue depth from the broker.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import get_engine, get_settings
from sync.settings import Settings
from sync.telemetry import StoreCollector
from tasks.metrics import QueueCollector, registry

router = APIRouter(tags=["metrics"])


def _scraped(request: Request, settings: Settings, engine: Engine) -> bytes:
    state = request.app.state
    if getattr(state, "metrics_registry", None) is None:
        scraped = CollectorRegistry(auto_describe=False)
        scraped.register(StoreCollector(engine))
        scraped.register(QueueCollector(settings))
        state.metrics_registry = scraped
    return generate_latest(registry()) + generate_latest(state.metrics_registry)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    """crmsync's metrics (``crmsync_*``) in the Prometheus text format."""
    body = await run_in_threadpool(_scraped, request, settings, engine)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
