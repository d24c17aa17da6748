"""What the benchmarks share: a sandbox process, a fresh PostgreSQL schema, a worker.

Every figure runs the way production runs: the CRM emulator in its own process (over real
HTTP), the store in PostgreSQL, the sync in a Celery worker process on Redis, started by
a task sent exactly as ``crmsync sync`` sends it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, select, text

from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import make_engine, transaction, upgrade
from sync.store.models import SyncRun

ROOT = Path(__file__).resolve().parents[1]
CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
POSTGRES = os.environ.get(
    "CRMSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("CRMSYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
HUBSPOT_SECRET = "bench-hubspot-client-secret"


@dataclass
class SandboxProcess:
    """``crmsync sandbox serve`` in its own process (so it never shares our GIL)."""

    process: subprocess.Popen[str]
    info: dict[str, Any]
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def salesforce_url(self) -> str:
        return str(self.info["salesforce"]["instance_url"])

    @property
    def hubspot_url(self) -> str:
        return str(self.info["hubspot"]["host"])

    def control(self, crm: str) -> httpx.Client:
        if crm == "salesforce":
            return httpx.Client(
                base_url=self.salesforce_url + "/_sandbox",
                verify=self.info["salesforce"]["ca_bundle"],
                trust_env=False,
                timeout=120,
            )
        return httpx.Client(base_url=self.hubspot_url + "/_sandbox", trust_env=False, timeout=120)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.workdir.cleanup()


def start_sandbox(crm: str, records: int) -> SandboxProcess:
    """The sandbox with ``records`` accounts (salesforce), companies (hubspot) or both."""
    workdir = tempfile.TemporaryDirectory(prefix="crmsync-bench-")
    seed = [
        # orgs with every default field (multi-currency, address3), as the figures assume
        "--multi-currency",
        "--address3",
        *(["--accounts", str(records)] if crm in ("salesforce", "both") else []),
        *(["--companies", str(records)] if crm in ("hubspot", "both") else []),
    ]
    process = subprocess.Popen(
        [
            CRMSYNC,
            "sandbox",
            "serve",
            "--json",
            "--salesforce-port",
            "0",
            "--hubspot-port",
            "0",
            "--workdir",
            workdir.name,
            *seed,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox exited before it was ready")
        lines.append(line)
        try:
            info = json.loads("".join(lines))
            break
        except json.JSONDecodeError:
            continue
    sandbox = SandboxProcess(process, info, workdir)
    if crm in ("hubspot", "both"):
        # The sandbox reports HubSpot's Professional limit (190 requests per 10 s) in its
        # rate-limit headers, and the worker's shared budget obeys them: a real portal caps
        # a backfill there. To measure crmsync rather than the limit, the benchmark has
        # the headers announce a 10 ms window.
        with sandbox.control("hubspot") as client:
            client.put("/faults", json={"rate_limit_interval_ms": 10})
    return sandbox


def request_counts(sandbox: SandboxProcess, crm: str) -> dict[str, int]:
    with sandbox.control(crm) as client:
        if crm == "salesforce":
            answer = client.get("/counts").json()
        else:
            answer = client.get("/requests").json()["counts"]
    return {str(k): int(v) for k, v in answer.items()}


def reset_counts(sandbox: SandboxProcess, crm: str) -> None:
    with sandbox.control(crm) as client:
        client.delete("/counts" if crm == "salesforce" else "/requests")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a new, migrated schema (dropped after)."""
    schema = f"crmsync_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def connection_spec(
    crm: str, sb: SandboxProcess, name: str, settings: dict[str, Any] | None = None
) -> ConnectionSpec:
    """A connection to the sandbox's ``crm``, as an operator adds one."""
    if crm == "salesforce":
        # an access token as an OAuth flow leaves it, plus what refreshes it
        with sb.control("salesforce") as client:
            token = client.post("/tokens").json()["access_token"]
        creds = {
            "access_token": token,
            "client_id": sb.info["salesforce"]["client_id"],
            "client_secret": "sandbox-client-secret",
        }
        options = {
            "instance_url": sb.salesforce_url,
            "ca_bundle": sb.info["salesforce"]["ca_bundle"],
            "organization_id": sb.info["salesforce"]["organization_id"],
        }
        field_map: dict[str, str | None] = {"email": "Billing_Email__c"}
    else:
        creds = {"access_token": "bench-token", "client_secret": HUBSPOT_SECRET}
        options = {"host": sb.hubspot_url}
        field_map = {}
    return ConnectionSpec(
        name=name,
        kind=crm,
        credentials=creds,
        settings={**options, **(settings or {})},
        field_map=field_map,
        schedule_seconds=86_400,
    )


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    """``crmsync worker`` (one task at a time) in its own process."""
    return subprocess.Popen(
        [CRMSYNC, "worker", "--pool", "solo", "--loglevel", "warning", *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_workers(settings: Settings, count: int, timeout: float = 60) -> None:
    """Until ``count`` workers answer a ping."""
    from tasks.app import celery

    app = celery(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5)) >= count:
            return
    raise TimeoutError(f"{count} workers did not start")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from ``/proc``; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (its connections to PostgreSQL)."""
    inodes: set[str] = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.exists() else ():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def backend_cpu_seconds(engine: Engine, client_pid: int) -> dict[int, float]:
    """The PostgreSQL backends serving a process's connections, and their CPU time so far
    (the server runs on this machine: the bench reads its processes like the worker's)."""
    ports = _local_ports(client_pid)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT pid, client_port FROM pg_stat_activity")).all()
    return {int(pid): cpu_seconds(int(pid)) for pid, port in rows if port in ports}


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Bench:
    """One organisation with one connection to the sandbox, and a worker for it."""

    crm: str
    sandbox: SandboxProcess
    settings: Settings
    engine: Engine
    env: dict[str, str]
    organisation_id: str = ""
    connection_id: str = ""
    worker: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    last_wall_seconds: float = 0.0
    worker_start_seconds: float = 0.0

    def connect(self, settings: dict[str, Any] | None = None) -> None:
        with transaction(self.engine) as session:
            self.organisation_id = organisations.create_organisation(
                session, f"bench {self.crm}"
            ).id
            spec = connection_spec(self.crm, self.sandbox, self.crm, settings)
            self.connection_id = add_connection(
                session, self.settings, self.organisation_id, spec
            ).id

    def start_worker(self) -> None:
        """Start a worker and wait until it answers (a worker is a service that runs all
        the time: its start-up is not part of a sync's time; ``worker_start_seconds``)."""
        started = time.monotonic()
        self.worker = start_worker(self.env)
        wait_for_workers(self.settings, 1)
        self.worker_start_seconds = time.monotonic() - started

    def worker_peak_rss_mb(self) -> float:
        """The worker's peak resident memory (VmHWM) so far."""
        assert self.worker is not None
        status = Path(f"/proc/{self.worker.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_process(self.worker)
            self.worker = None

    def sync(self, *, full: bool = False, timeout: float = 900, poll: float = 0.02) -> SyncRun:
        """Send the sync task as ``crmsync sync`` does and wait for its run to end.
        ``self.last_wall_seconds`` is then the time from sending the task to the run's end
        as the worker stamped it (queueing included; not rounded up to the polling)."""
        from tasks.enqueue import enqueue_sync

        with transaction(self.engine) as session:
            known = set(session.scalars(select(SyncRun.id)))
        sent = datetime.now(UTC)
        enqueue_sync(self.settings, self.connection_id, trigger="operator", full=full)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with transaction(self.engine) as session:
                runs = [r for r in session.scalars(select(SyncRun)) if r.id not in known]
                done = [r for r in runs if r.status != "running"]
                if done:
                    finished = done[0].finished_at or datetime.now(UTC)
                    if finished.tzinfo is None:
                        finished = finished.replace(tzinfo=UTC)
                    self.last_wall_seconds = (finished - sent).total_seconds()
                    return done[0]
            time.sleep(poll)
        raise TimeoutError("the sync did not finish")


def free_port() -> int:
    """A port nothing listens on now (for ``crmsync web``; other benches may run)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def store_settings(url: str, web_port: int = 0) -> tuple[Settings, dict[str, str]]:
    """Settings (and the same as environment variables, for the worker and web
    processes) for the store at ``url``, with a Redis key prefix of their own; webhooks
    are signed for ``crmsync web`` on ``web_port``."""
    prefix = f"crmsync-bench-{uuid.uuid4().hex[:6]}"
    secret = new_secret_key()
    public = f"http://127.0.0.1:{web_port or free_port()}"
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": url,
        "CRMSYNC_BROKER_URL": REDIS,
        "CRMSYNC_REDIS_KEY_PREFIX": prefix,
        "CRMSYNC_SECRET_KEY": secret,
        "CRMSYNC_PUBLIC_BASE_URL": public,
    }
    settings = Settings(
        database_url=url,
        broker_url=REDIS,
        redis_key_prefix=prefix,
        secret_key=SecretStr(secret),
        public_base_url=public,
    )
    return settings, env


def start_web(settings: Settings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``crmsync web`` on the port of ``settings.public_base_url``, once it answers."""
    port = settings.public_base_url.rsplit(":", 1)[1]
    web = subprocess.Popen(
        [CRMSYNC, "web", "--port", port],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{settings.public_base_url}/healthz", trust_env=False).status_code == 200:
                return web
        except httpx.HTTPError:
            pass
        if web.poll() is not None:
            raise RuntimeError(f"crmsync web exited with {web.returncode}")
        time.sleep(0.1)
    stop_process(web)
    raise TimeoutError("crmsync web did not start")


@contextmanager
def bench(
    crm: str,
    records: int,
    *,
    sandbox: SandboxProcess | None = None,
    connection_settings: dict[str, Any] | None = None,
) -> Iterator[Bench]:
    """A sandbox with ``records`` seeded (or the one given, left running), a fresh store, a
    connection (with ``connection_settings`` added to its settings) and a worker."""
    own = sandbox is None
    if sandbox is None:
        sandbox = start_sandbox(crm, records)
    try:
        with fresh_schema() as url:
            settings, env = store_settings(url)
            engine = make_engine(url)
            b = Bench(crm, sandbox, settings, engine, env)
            b.connect(connection_settings)
            reset_counts(sandbox, crm)
            b.start_worker()
            try:
                yield b
            finally:
                b.stop_worker()
                engine.dispose()
    finally:
        if own:
            sandbox.stop()
