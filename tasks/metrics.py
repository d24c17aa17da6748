"""Metrics of the Celery side, and serving every crmsync metric.

- ``crmsync_lock_waits_total{organisation_id,connection_id,crm,lock}``: a sync found its
  connection's lock held by another worker (the scheduled sync is skipped, a webhook sync
  comes back later);
- ``crmsync_queue_depth{queue}``: messages waiting in each of crmsync's queues, read from
  the broker at each scrape (:class:`QueueCollector`).

``crmsync web`` serves ``/metrics``; ``crmsync worker`` serves the same text on its own port
(``CRMSYNC_WORKER_METRICS_PORT``). A prefork worker runs its tasks in several processes:
prometheus-client's multiprocess mode (:func:`use_multiprocess`) has each of them write its
figures to files in one directory, which the worker's endpoint adds up.

Every family served is crmsync's own (``crmsync_*``): prometheus-client's default process,
platform and garbage-collector collectors are taken out of its registry, so ``/metrics`` reads
the same whichever process serves it (the multiprocess endpoint never had them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sync.settings import Settings
from tasks.app import QUEUES, celery, queue_name, uses_redis
from tasks.runtime import redis_client

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

for _default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    with contextlib.suppress(KeyError):  # taken out already
        REGISTRY.unregister(_default)

LOCK_WAITS = Counter(
    "crmsync_lock_waits",
    "Syncs that found their connection's lock held by another worker.",
    ["organisation_id", "connection_id", "crm", "lock"],
)


def lock_busy(organisation_id: str, connection_id: str, crm: str, lock: str) -> None:
    """Count (and log) a sync that did not get its connection's lock."""
    LOCK_WAITS.labels(organisation_id, connection_id, crm, lock).inc()
    log.info(
        "lock held by another worker",
        extra={
            "organisation_id": organisation_id,
            "connection_id": connection_id,
            "crm": crm,
            "lock": lock,
        },
    )


class QueueCollector(Collector):
    """Messages waiting in each queue, read from the broker when scraped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "crmsync_queue_depth", "Messages waiting in crmsync's queues.", labels=["queue"]
        )
        try:
            for queue in QUEUES:
                depth.add_metric([queue], self._depth(queue_name(self.settings, queue)))
        except Exception:  # the broker is away: the scrape answers without this family
            log.warning("metrics: the broker did not answer", exc_info=True)
            return
        yield depth

    def _depth(self, name: str) -> float:
        if uses_redis(self.settings):
            client = redis_client(self.settings)
            # kombu's Redis transport keeps a queue as a list under the global key prefix
            return float(client.llen(f"{self.settings.redis_key_prefix}:{name}"))  # type: ignore[union-attr]
        with celery(self.settings).connection_for_read() as connection:
            answer = connection.default_channel.queue_declare(queue=name, passive=True)
            return float(answer.message_count)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def use_multiprocess(directory: Path | None = None) -> Path:
    """Put this process (and the processes it forks) in prometheus-client's multiprocess
    mode, writing to a fresh ``directory``; returns it. Call before any metric is used:
    prometheus-client picks its value class when first imported, so it is picked again here
    (the CLI imports the metric definitions before it knows it will run a prefork worker)."""
    from prometheus_client import values

    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="crmsync-metrics-"))
    else:
        shutil.rmtree(directory, ignore_errors=True)  # figures of an earlier run would add up
        directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def registry() -> CollectorRegistry:
    """This process's metrics, or, in multiprocess mode, those of every process."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return combined
    return REGISTRY


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> Any:
    """Serve the worker's metrics on ``port`` (a failure to bind is logged, not fatal: the
    worker's job is syncing)."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry())
    except OSError as error:
        log.warning("worker metrics not served on port %s: %s", port, error)
        return None
    log.info("worker metrics on http://%s:%s/metrics", host, port)
    return server
