"""Beat's scheduler, with a heartbeat: the time of the last dispatch beat sent.

``crmsync health beat`` (docker-compose's healthcheck of beat) reads it: a beat process
that runs but cannot reach the broker, or whose loop is stuck, stops renewing it, which a
ping of Redis would never show.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from celery.beat import PersistentScheduler

from sync.settings import Settings
from tasks.app import celery

HEARTBEAT_FILE = "beat-heartbeat"


def heartbeat_path(settings: Settings) -> Path:
    """Where beat writes its heartbeat: beside its schedule file."""
    return Path(celery(settings).conf.beat_schedule_filename).with_name(HEARTBEAT_FILE)


def heartbeat_age(settings: Settings) -> float | None:
    """Seconds since beat last sent a task (None: it never has, here)."""
    try:
        return max(0.0, time.time() - heartbeat_path(settings).stat().st_mtime)
    except FileNotFoundError:
        return None


def default_max_age(settings: Settings) -> float:
    """How old the heartbeat may be before beat counts as unhealthy: a few dispatches."""
    return max(60.0, 4 * settings.dispatch_interval_seconds)


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's persistent scheduler that renews the heartbeat each time it has handed a
    task to the broker."""

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        result = super().apply_async(entry, producer, advance, **kwargs)
        path = Path(self.app.conf.beat_schedule_filename).with_name(HEARTBEAT_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{time.time():.3f}\n")
        return result
