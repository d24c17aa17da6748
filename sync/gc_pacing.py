"""CPython's cyclic garbage collector, paced for a sync run.

A run allocates a handful of containers per record (the CRM's parsed JSON, the record,
its decision, its rows), and reference counting frees nearly all of them as soon as a
page is done. The cyclic collector nevertheless runs each time 700 more containers are
alive than were (CPython 3.11's default threshold), and every 100 of those runs it walks
every object the process holds (SQLAlchemy's, pydantic's, the connectors' modules): on a
30,000-company HubSpot backfill with contacts that was 2.0 of the worker's 8.1 CPU
seconds, 14 full collections of ~0.1 s each (measured with ``gc.callbacks``). While a run
lasts the collector runs every 20,000 instead: the garbage that only it can free (cycles)
still is. (At 50,000 a Salesforce backfill of 100k accounts held 18 MB more at its peak,
172 against 154 MB, for 1.5 s less CPU: the memory bound is kept.)
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: the young generation's threshold while a run lasts (CPython's default is 700)
RUN_THRESHOLD = 20_000

_lock = threading.Lock()
_runs = 0
_before: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def paced_collections() -> Iterator[None]:
    """Collect cycles every :data:`RUN_THRESHOLD` allocations while this lasts. Runs may
    overlap (threads of one process): the first sets the pace, the last one out restores
    the process's own."""
    global _runs, _before
    with _lock:
        if _runs == 0:
            _before = gc.get_threshold()
            young, middle, old = _before
            gc.set_threshold(max(young, RUN_THRESHOLD), middle, old)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_before)
