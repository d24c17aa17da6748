"""What a worker process shares between its tasks: settings, the store's engine, Redis.

Built lazily, once per process, so that a prefork worker creates its connections in the
child after the fork, never in the parent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Engine

from sync.settings import Settings, get_settings
from sync.store.db import engine_for


@cache
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def redis_client(settings: Settings) -> Any | None:
    """The Redis for locks and rate budgets, or None on the embedded default."""
    url = settings.effective_redis_url()
    return _redis(url) if url else None


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine


_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, from the environment of its first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = get_settings()
            _runtime = Runtime(settings, engine_for(settings.database_url))
        return _runtime
