"""The worker's test stack: real Celery worker and beat processes on real Redis and
PostgreSQL, the CRM sandbox in-process, and the web API on a background thread.

Each test gets an empty store and its own Redis key prefix (queues, locks, rate budgets), so
concurrent test sessions never see each other's messages. Every process a test starts is
terminated in teardown; every wait polls with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from api.app import create_app
from sandbox.http import BackgroundServer
from sandbox.server import Sandbox, SandboxOptions
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import engine_for, make_engine, transaction
from tests.conftest import _truncate_all

CRMSYNC = str(Path(sys.executable).parent / "crmsync")
HUBSPOT_SECRET = "sandbox-client-secret"
SALESFORCE_WEBHOOK_SECRET = "sf-outbound-secret"


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and every child it forked (a prefork worker's pool), at once,
        as a crash or an OOM kill would."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=15)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    engine: Engine
    redis: Any
    workdir: Path
    processes: list[Process] = field(default_factory=list)
    servers: list[BackgroundServer] = field(default_factory=list)

    # -- processes
    def start(self, name: str, *args: str, ready: str | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        handle = open(log, "wb")  # noqa: SIM115 - the child writes it until it stops
        popen = subprocess.Popen(
            [CRMSYNC, *args],
            env=self.env,
            cwd=self.workdir,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() reaches its children
        )
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        if ready is not None:

            def started() -> bool:
                if popen.poll() is not None:
                    pytest.fail(f"{name} exited {popen.returncode}:\n{process.output()}")
                return ready in process.output()

            wait_for(started, 60, f"{name} to start")
        return process

    def worker(self, name: str = "w1", *, queues: str = "scheduled,webhook,operator") -> Process:
        return self.start(
            name,
            "worker",
            "--queues",
            queues,
            "--concurrency",
            "2",
            "--hostname",
            f"{name}@%h-{uuid.uuid4().hex[:6]}",
            "--loglevel",
            "info",
            ready="ready.",
        )

    def beat(self) -> Process:
        return self.start("beat", "beat", "--loglevel", "info", ready="beat: Starting")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CRMSYNC, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def serve_api(self) -> str:
        """Serve the API on a background thread; its base URL (also the public base URL)."""
        app = create_app(self.settings)
        server = BackgroundServer(app).start()
        self.servers.append(server)
        url = f"http://127.0.0.1:{server.port}"
        app.state.settings = self.settings.model_copy(update={"public_base_url": url})
        return url

    # -- data
    def organisation(self, name: str = "Acme") -> str:
        with transaction(self.engine) as session:
            return organisations.create_organisation(session, name).id

    def hubspot(self, sb: Sandbox, org: str, name: str = "hs", **options: Any) -> str:
        settings = {"host": sb.hubspot_url, "backoff_base_seconds": 0.01, "max_attempts": 8}
        settings.update(options.pop("settings", {}))
        spec = ConnectionSpec(
            name=name,
            kind="hubspot",
            credentials={"access_token": f"token-{name}", "client_secret": HUBSPOT_SECRET},
            settings=settings,
            **options,
        )
        with transaction(self.engine) as session:
            return add_connection(session, self.settings, org, spec).id

    def salesforce(self, sb: Sandbox, org: str, name: str = "sf", **options: Any) -> str:
        spec = ConnectionSpec(
            name=name,
            kind="salesforce",
            credentials={
                "client_id": sb.salesforce.client_id,
                "client_secret": sb.salesforce.client_secret,
                "webhook_secret": SALESFORCE_WEBHOOK_SECRET,
            },
            settings={
                "instance_url": sb.salesforce_url,
                "ca_bundle": str(sb.ca_file),
                "organization_id": sb.salesforce.organization_id,
                "backoff_base_seconds": 0.01,
                "limit_wait_seconds": 0.5,
            },
            field_map={"email": "Billing_Email__c"},
            **options,
        )
        with transaction(self.engine) as session:
            return add_connection(session, self.settings, org, spec).id

    def queue_length(self, queue: str) -> int:
        prefix = self.settings.redis_key_prefix
        return int(self.redis.llen(f"{prefix}:{prefix}.{queue}"))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture
def crm(sandbox: Sandbox) -> Sandbox:
    """The module's sandbox, emptied for this test."""
    sandbox.hubspot.reset()
    sandbox.hubspot.configure_webhooks(enabled=False, url=None, duplicate=False)
    sandbox.salesforce.reset()
    sandbox.salesforce.configure_outbound(url=None)
    return sandbox


@contextmanager
def open_stack(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **overrides: str,
) -> Iterator[Stack]:
    """A stack on these services; ``overrides`` are extra ``CRMSYNC_*`` settings (by their
    lower-case name without the prefix, e.g. ``lock_ttl_seconds="3"``)."""
    import redis

    engine = make_engine(postgres_url)
    _truncate_all(engine)
    prefix = f"crmsync-test-{uuid.uuid4().hex[:12]}"
    env_settings = {
        "CRMSYNC_DATABASE_URL": postgres_url,
        "CRMSYNC_BROKER_URL": redis_url,
        "CRMSYNC_REDIS_URL": "",
        "CRMSYNC_REDIS_KEY_PREFIX": prefix,
        "CRMSYNC_SECRET_KEY": new_secret_key(),
        "CRMSYNC_DISPATCH_INTERVAL_SECONDS": "1",
        "CRMSYNC_LOCK_TTL_SECONDS": "10",
        "CRMSYNC_TASK_SOFT_TIME_LIMIT": "120",
        "CRMSYNC_TASK_TIME_LIMIT": "150",
        # workers serve metrics only where a test asks (--metrics-port)
        "CRMSYNC_WORKER_METRICS_PORT": "0",
    }
    env_settings.update({f"CRMSYNC_{k.upper()}": v for k, v in overrides.items()})
    for key, value in env_settings.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(env_settings)
    env["PYTHONUNBUFFERED"] = "1"
    settings = Settings()
    client = redis.Redis.from_url(redis_url)
    stack = Stack(settings, env, engine, client, tmp_path)
    try:
        yield stack
    finally:
        for process in stack.processes:
            process.stop()
        for server in stack.servers:
            server.stop()
        try:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
        finally:
            client.close()
            engine.dispose()
            engine_for(postgres_url).dispose()


@pytest.fixture
def stack(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    with open_stack(postgres_url, redis_url, tmp_path, monkeypatch) as stack:
        yield stack
