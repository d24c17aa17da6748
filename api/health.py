"""``/readyz``: can this deployment do its work? (``/healthz``, in app.py, is liveness.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import get_settings
from sync.settings import Settings
from tasks.health import readiness

router = APIRouter(tags=["health"])


@router.get(
    "/readyz",
    responses={503: {"description": "A check failed: `failed` names it, `checks` says why"}},
)
async def readyz(settings: Annotated[Settings, Depends(get_settings)]) -> JSONResponse:
    """200 when the database and the broker answer and the store's migrations are at head;
    503 otherwise, naming the check that failed."""
    result = await run_in_threadpool(readiness, settings)
    body = {
        "status": "ready" if result.ready else "not ready",
        "checks": result.checks,
        "failed": result.failed,
    }
    code = status.HTTP_200_OK if result.ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body, code)
