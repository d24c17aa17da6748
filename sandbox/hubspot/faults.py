"""Fault injection for the HubSpot emulator, set at construction or at run time.

=====================  ==================================================================
name                   effect
=====================  ==================================================================
rate_limit_next        answer the next N API requests with 429 (``RATE_LIMITS``)
rate_limit_policy      the ``policyName`` of those 429s: ``TEN_SECONDLY_ROLLING`` (default),
                       ``SECONDLY`` or ``DAILY``
retry_after            add ``Retry-After: <seconds>`` to those 429s (None: no header)
retry_after_http_date  True: write that ``Retry-After`` as the HTTP-date it ends at
                       (``Wed, 02 Dec 2026 12:00:05 GMT``; RFC 9110 section 10.2.3 allows
                       either form)
rate_limit_interval_ms the burst window (190 requests per this many ms; 10,000 as
                       documented) and its ``X-HubSpot-RateLimit-Interval-Milliseconds``
daily_limit            the portal's daily allowance (None: 1,000,000, an Enterprise
                       private app's); past it every request answers 429 ``DAILY`` until
                       the portal's midnight (or ``new_day``)
search_per_second      search requests allowed per second (5; None: unlimited); past it
                       429 ``SECONDLY``
server_error_next      answer the next N API requests with ``server_error_status``
server_error_rate      answer this fraction (0..1) of API requests with a 5xx (seeded: the
                       same requests fail each time the rate is set)
server_error_seed      the seed of those draws (None: the sandbox's seed)
server_error_status    the 5xx status to use (500 by default; 502/503/504 are real too)
latency_ms             add this much latency to every API request
hang_next              the next N API requests wait ``hang_seconds`` before answering
hang_seconds           (past a client's time-out; released early by clear/close)
hang_after             answer the next N API requests, then hang every later one
                       ``hang_seconds`` or until this is set back to None (a portal that
                       stops answering mid-run: a test stops a run at a known page); None
                       (default): never
record_errors          {id or unique value: "validation" | "duplicate" | "not_found"}:
                       per-record errors in batch create/update/upsert (207)
expired_token          answer every API request with 401 (expired OAuth token)
multi_status           False: a batch create refuses the whole batch for one refused input
                       even when every input has an ``objectWriteTraceId`` (as a server
                       without multi-status error handling would)
omit_archived_at       True: archived records come without ``archivedAt`` (the objects
                       reference's SimplePublicObject requires only ``id``, ``properties``,
                       ``createdAt`` and ``updatedAt``; ``archived`` and ``archivedAt`` are
                       optional), in the list, GET and batch read
batch_errors_by_id     True: a 207's error about one input names it in the error's ``id``
                       and leaves ``context`` empty (the batch references' error schema
                       has both: ``"context": {}`` and an optional ``"id"``), instead of
                       ``context.ids``
bare_write_results     True: batch create / update / upsert results carry no
                       ``objectWriteTraceId`` and an empty ``properties`` (both optional
                       or empty in the batch references' examples); ids, stamps, ``new``
                       as usual
search_index_delay_seconds  a write made while this is set reaches the search index this
                       many seconds later: until then search leaves the record out, while
                       GET, batch read and the list API have it at once (HubSpot's search
                       guide: new or updated objects may take a few moments to appear in
                       search results). 0 (default): at once, so that tests that search
                       right after a write stay exact
=====================  ==================================================================
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    rate_limit_next: int = 0
    rate_limit_policy: str = "TEN_SECONDLY_ROLLING"
    retry_after: float | None = None
    retry_after_http_date: bool = False
    rate_limit_interval_ms: int = 10_000
    daily_limit: int | None = None
    search_per_second: float | None = 5
    server_error_next: int = 0
    server_error_rate: float = 0.0
    server_error_status: int = 500
    server_error_seed: int | None = None
    latency_ms: float = 0.0
    hang_next: int = 0
    hang_seconds: float = 5.0
    hang_after: int | None = None
    record_errors: dict[str, str] = field(default_factory=dict)
    expired_token: bool = False
    multi_status: bool = True
    search_index_delay_seconds: float = 0.0
    omit_archived_at: bool = False
    batch_errors_by_id: bool = False
    bare_write_results: bool = False


FAULT_NAMES = frozenset(f.name for f in fields(Faults))

#: what ``take`` decided -> the kind it is counted as in ``injected``
_KINDS = {
    "auth": "expired_token",
    "rate": "rate_limit",
    "error": "server_error",
    "hang": "hang",
    "stall": "hang",
}


class FaultState:
    """The current faults, thread-safe, with the decisions the server asks of them."""

    def __init__(self, seed: int = 0, **initial: Any) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self.faults = Faults()
        self.generation = 0  # bumped by clear(): releases hanging requests
        #: answers the faults gave, by kind, until ``reset_injected``
        self.injected: Counter[str] = Counter()
        if initial:
            self.set(**initial)

    def set(self, **changes: Any) -> None:
        unknown = set(changes) - FAULT_NAMES
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        with self._lock:
            if "server_error_rate" in changes or "server_error_seed" in changes:
                # the same draws each time a rate is set: a test's run of 5xx answers does not
                # depend on what ran before it
                seed = changes.get("server_error_seed", self.faults.server_error_seed)
                self._rng = random.Random(self._seed if seed is None else seed)
            for name, value in changes.items():
                if name == "record_errors":
                    value = {str(k): str(v) for k, v in (value or {}).items()}
                setattr(self.faults, name, value)

    def clear(self) -> None:
        with self._lock:
            self.faults = Faults()
            self.generation += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {f.name: getattr(self.faults, f.name) for f in fields(Faults)}

    def injected_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.injected)

    def note(self, kind: str) -> None:
        """Count an answer of ``kind`` that was not injected (the portal's own 429s)."""
        with self._lock:
            self.injected[kind] += 1

    def reset_injected(self) -> None:
        with self._lock:
            self.injected.clear()

    def take(self) -> tuple[str | None, Faults]:
        """Decide the fate of one API request: None, "auth", "rate", "error", "hang" or
        "stall" (a hang of ``hang_after``)."""
        with self._lock:
            fate, f = self._decide()
            if fate is not None:
                self.injected[_KINDS[fate]] += 1
            return fate, f

    def _decide(self) -> tuple[str | None, Faults]:
        """(the caller holds the lock)"""
        f = self.faults
        if f.expired_token:
            return "auth", f
        if f.rate_limit_next > 0:
            f.rate_limit_next -= 1
            return "rate", f
        if f.server_error_next > 0:
            f.server_error_next -= 1
            return "error", f
        if f.server_error_rate > 0 and self._rng.random() < f.server_error_rate:
            return "error", f
        if f.hang_next > 0:
            f.hang_next -= 1
            return "hang", f
        if f.hang_after is not None:
            if f.hang_after == 0:
                return "stall", f
            f.hang_after -= 1
        return None, f

    def stall_lifted(self) -> bool:
        """``hang_after`` was set back to None: its hanging requests go on."""
        with self._lock:
            return self.faults.hang_after is None

    def search_index_delay_ms(self) -> int:
        """How long a write made now takes to reach the search index (ms)."""
        with self._lock:
            return max(0, round(self.faults.search_index_delay_seconds * 1000))

    def record_error(self, *keys: str | None) -> tuple[str, str] | None:
        """The injected error for a batch input known by any of ``keys``: (key, kind)."""
        with self._lock:
            errors = self.faults.record_errors
            for key in keys:
                if key is not None and key in errors:
                    return key, errors[key]
        return None
