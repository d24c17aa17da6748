"""Single-flight locks: at most one holder of a name at a time, across workers and hosts.

With Redis (:class:`RedisLock`) the lock is a key holding a random token, set with ``NX``
and a TTL. A thread renews the TTL while the holder lives; release deletes the key only if
it still holds our token (a Lua compare-and-delete), so a holder whose lock expired never
frees someone else's. A worker killed outright stops renewing, and the lock frees itself
after ``lock_ttl_seconds``.

Without Redis (the embedded default: one host), :class:`FileLock` is an ``flock`` on a file
beside the store; the kernel frees it when the holding process dies.

Use :func:`held`, which releases on every exit path::

    with held(settings, f"sync:{connection_id}") as acquired:
        if not acquired:
            return "busy"
        ...
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from sync.settings import Settings
from tasks.app import state_dir
from tasks.runtime import redis_client

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free; True when taken (never blocks)."""

    def release(self) -> None:
        """Give the lock back (a no-op when not held)."""


class RedisLock:
    """A Redis lock with a TTL, renewed every third of the TTL while held."""

    def __init__(self, client: Any, key: str, ttl_seconds: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self.token = secrets.token_hex(16)
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name=f"lock {self.key}")
        self._renewer.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                renewed = self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
            except Exception:  # Redis briefly unreachable: try again next period
                log.warning("could not renew lock %s", self.key, exc_info=True)
                continue
            if not renewed:
                self.lost = True
                log.error("lock %s expired while held (was the worker stalled?)", self.key)
                return

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        self.client.eval(_RELEASE, 1, self.key, self.token)

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class FileLock:
    """An exclusive, non-blocking ``flock`` on a file (one host)."""

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
def held(settings: Settings, name: str) -> Iterator[bool]:
    """Try to take the lock ``name``; yield whether it was taken; release it on every exit."""
    lock = lock_for(settings, name)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()
