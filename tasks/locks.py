"""Single-flight locks: at most one holder of a name at a time, across workers and hosts.

With Redis (:class:`RedisLock`) the lock is redis-py's :class:`redis.lock.Lock` (a key
holding a random token, set with ``NX`` and a TTL, released by compare-and-delete). A thread
of ours resets the TTL (``reacquire``) every third of it for as long as the holder lives. A
holder whose key is gone or holds another token — it expired during a long pause, or Redis
failed over or restarted — has *lost* the lock: :attr:`Lock.lost` turns true and stays
true, and the run checks it before every commit (:class:`sync.fencing.Fence`). So does a
holder that could not renew for a whole TTL, since its key may have expired meanwhile. A
worker killed outright stops renewing, and the lock frees itself after
``lock_ttl_seconds``.

A lost lock is noticed only at the next renewal; in between, the fencing token closes the
gap: the store refuses the commit of a run whose token is no longer the newest
(:func:`sync.store.fencing.claim`).

Without Redis (the embedded default: one host), :class:`FileLock` is an ``flock`` on a file
beside the store; the kernel frees it when the holding process dies, and it is never lost
while its holder lives.

Use :func:`held`, which releases on every exit path::

    with held(settings, f"sync:{connection_id}") as lock:
        if lock is None:
            return "busy"
        ... lock.lost ...
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from redis.exceptions import LockError, LockNotOwnedError, RedisError

from sync.settings import Settings
from tasks.app import state_dir
from tasks.runtime import redis_client

log = logging.getLogger(__name__)


class Lock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free; True when taken (never blocks)."""

    def release(self) -> None:
        """Give the lock back (a no-op when not held)."""

    @property
    def lost(self) -> bool:
        """True once the lock is known, or feared, to have been lost while held."""


class RedisLock:
    """redis-py's lock, with a TTL reset every third of the TTL while held."""

    def __init__(self, client: Any, key: str, ttl_seconds: float) -> None:
        self.key = key
        self.ttl = max(1.0, float(ttl_seconds))
        # thread_local=False: the renewing thread must see the token the holder took
        self._lock = client.lock(key, timeout=self.ttl, blocking=False, thread_local=False)
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    @property
    def token(self) -> str | None:
        token = self._lock.local.token
        return token.decode() if isinstance(token, bytes) else token

    def acquire(self) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        self._lost.clear()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name=f"lock {self.key}")
        self._renewer.start()
        return True

    def _renew(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
                renewed_at = time.monotonic()
            except LockNotOwnedError:
                self._mark_lost("expired or taken while held (a stalled worker? Redis restarted?)")
                return
            except (RedisError, OSError):
                # Redis unreachable for a moment: try again next period; past a whole TTL
                # without renewal the key may have expired, so the lock counts as lost
                if time.monotonic() - renewed_at >= self.ttl:
                    self._mark_lost("could not be renewed for a whole TTL")
                    return
                log.warning("could not renew lock %s; retrying", self.key, exc_info=True)

    def _mark_lost(self, why: str) -> None:
        self._lost.set()
        log.error("lock %s lost: %s", self.key, why)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        try:
            self._lock.release()
        except LockNotOwnedError:
            pass  # it expired or another holder has it now: never free someone else's
        except LockError:
            pass  # never taken
        except (RedisError, OSError):
            # Redis is unreachable: the key (if it still exists) frees itself after its TTL
            log.warning("could not release lock %s", self.key, exc_info=True)

    def holder(self) -> str | None:
        value = self._lock.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class FileLock:
    """An exclusive, non-blocking ``flock`` on a file (one host)."""

    lost = False  # the kernel holds it for as long as the process lives

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "ab")  # noqa: SIM115 - held open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def lock_for(settings: Settings, name: str) -> Lock:
    """The lock called ``name`` (``sync:<connection id>``, ``inbox:<connection id>``)."""
    client = redis_client(settings)
    if client is not None:
        return RedisLock(
            client, f"{settings.redis_key_prefix}:lock:{name}", settings.lock_ttl_seconds
        )
    safe = name.replace(os.sep, "_").replace(":", "-")
    return FileLock(state_dir(settings) / "locks" / f"{safe}.lock")


@contextmanager
def held(settings: Settings, name: str) -> Iterator[Lock | None]:
    """Try to take the lock ``name``; yield it when taken (None when another holds it);
    release it on every exit."""
    lock = lock_for(settings, name)
    acquired = lock.acquire()
    try:
        yield lock if acquired else None
    finally:
        if acquired:
            lock.release()
