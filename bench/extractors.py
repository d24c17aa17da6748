"""The open extractors crmsync is measured against, run against crmsync's own sandbox.

``make bench`` installs each from PyPI into a virtualenv of its own under
``bench/.cache/venvs`` (once; a stamp records the requirement) and runs it as its users
do, as a separate process, writing what it extracts where it writes it:

- **meltano-tap-hubspot** (Meltano Singer SDK): HubSpot companies → Singer JSON lines;
- **tap-salesforce** (singer-io, REST API): Salesforce Accounts → Singer JSON lines;
- **dlt** ``rest_api`` source → DuckDB: HubSpot companies (when dlt installs here).

Both taps hard-code their vendor's host (``api.hubapi.com``, ``login.salesforce.com``).
The runner points them at the sandbox without touching their code: ``HTTPS_PROXY`` names
:class:`bench.proxy.VendorProxy`, and the certificate it answers with is added to the trust
store the extractor's ``requests`` uses (its virtualenv's ``certifi`` bundle, which
singer-sdk's ``Session.send`` reads whatever ``REQUESTS_CA_BUNDLE`` says). See
``bench/proxy.py``.

For each run: wall-clock seconds of the whole process (start-up included, as a user runs
it), records written, API calls the sandbox served during the run (by endpoint), and the
process's peak RSS (``wait4``'s ``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, SandboxProcess, request_counts, reset_counts
from bench.proxy import Upstream, VendorProxy

CACHE = ROOT / "bench" / ".cache"
VENVS = CACHE / "venvs"

#: pinned so that a figure can be compared run to run
REQUIREMENTS = {
    "meltano-tap-hubspot": ["meltano-tap-hubspot==0.10.1"],
    "tap-salesforce": ["tap-salesforce==2.8.1"],
    "dlt": ["dlt[duckdb]==1.31.0"],
}

#: the HubSpot properties crmsync's default field map reads (dlt is asked for the same)
HUBSPOT_PROPERTIES = [
    "name",
    "address",
    "address2",
    "address3",
    "city",
    "state",
    "zip",
    "country",
    "phone",
    "domain",
    "hs_lastmodifieddate",
    "hs_merged_object_ids",
    "crmsync_id",
]


@dataclass
class ExtractorRun:
    """One extractor's run: what it did and what it cost."""

    tool: str
    version: str
    crm: str
    what: str
    seconds: float
    records: int
    calls: int
    calls_by_endpoint: dict[str, int]
    peak_rss_mb: float
    proxy_cpu_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class NotInstalled(RuntimeError):
    """An extractor that cannot be installed here (reported, not fatal)."""


def venv(tool: str) -> Path:
    """The tool's virtualenv, created and installed on first use."""
    path = VENVS / tool
    stamp = path / ".requirement"
    wanted = " ".join(REQUIREMENTS[tool])
    if stamp.exists() and stamp.read_text() == wanted:
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the base interpreter, not ours: the extractor must not see crmsync's packages
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True)
    install = subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS[tool]],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        raise NotInstalled(f"{tool} did not install: {install.stderr.strip()[-500:]}")
    certifi = _certifi_bundle(path)
    shutil.copy(certifi, certifi.with_suffix(".pem.orig"))
    stamp.write_text(wanted)
    return path


def _certifi_bundle(path: Path) -> Path:
    where = subprocess.run(
        [str(path / "bin" / "python"), "-c", "import certifi; print(certifi.where())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(where.stdout.strip())


def trust(path: Path, *certificates: Path) -> Path:
    """The venv's CA bundle = its own (as installed) plus ``certificates``; returned, so
    that ``REQUESTS_CA_BUNDLE`` can name the same file."""
    bundle = _certifi_bundle(path)
    original = bundle.with_suffix(".pem.orig")
    bundle.write_bytes(original.read_bytes() + b"".join(c.read_bytes() for c in certificates))
    return bundle


def installed_version(path: Path, distribution: str) -> str:
    out = subprocess.run(
        [
            str(path / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def run_measured(
    command: list[str], *, env: dict[str, str], cwd: Path, stdout: Path, stderr: Path
) -> tuple[float, float]:
    """Run ``command`` to completion: (wall seconds, peak RSS in MB). Raises on failure."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = stderr.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{command[0]} exited {process.returncode}: {tail}")
    return seconds, usage.ru_maxrss / 1024


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def start_proxy(sandbox: SandboxProcess, workdir: Path) -> VendorProxy:
    """The vendor hosts both taps hard-code, routed to this sandbox."""
    return VendorProxy(
        {
            "login.salesforce.com": Upstream(
                "127.0.0.1",
                _port(sandbox.salesforce_url),
                str(sandbox.info["salesforce"]["ca_bundle"]),
            ),
            "api.hubapi.com": Upstream("127.0.0.1", _port(sandbox.hubspot_url)),
        },
        workdir,
    ).start()


def _env(proxy: VendorProxy, bundle: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRMSYNC_", "VIRTUAL_ENV")) and k.lower() != "pythonpath"
    }
    env.update(
        {
            "HTTPS_PROXY": proxy.url,
            "https_proxy": proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(bundle),
        }
    )
    return env


def _count_records(path: Path, stream: str) -> int:
    count = 0
    with path.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type": "RECORD"') or line.startswith(b'{"type":"RECORD"'):
                message = json.loads(line)
                count += message.get("stream") == stream
    return count


def _calls(sandbox: SandboxProcess, crm: str) -> dict[str, int]:
    return {k: v for k, v in request_counts(sandbox, crm).items() if v}


def tap_hubspot(sandbox: SandboxProcess, proxy: VendorProxy, workdir: Path) -> ExtractorRun:
    """meltano-tap-hubspot, companies only (its own discovery, then the catalog with
    ``companies`` selected), to JSON lines."""
    path = venv("meltano-tap-hubspot")
    bundle = trust(path, proxy.cert)
    env = _env(proxy, bundle)
    tap = str(path / "bin" / "tap-hubspot")
    config = workdir / "tap-hubspot.json"
    config.write_text(json.dumps({"access_token": "bench-token"}))
    catalog = workdir / "tap-hubspot-catalog.json"
    run_measured(
        [tap, "--config", str(config), "--discover"],
        env=env,
        cwd=workdir,
        stdout=catalog,
        stderr=workdir / "tap-hubspot-discover.log",
    )
    _select(catalog, "companies")
    reset_counts(sandbox, "hubspot")
    cpu = proxy.cpu_seconds_now()
    out = workdir / "tap-hubspot.jsonl"
    seconds, rss = run_measured(
        [tap, "--config", str(config), "--catalog", str(catalog)],
        env=env,
        cwd=workdir,
        stdout=out,
        stderr=workdir / "tap-hubspot.log",
    )
    calls = _calls(sandbox, "hubspot")
    return ExtractorRun(
        "meltano-tap-hubspot",
        installed_version(path, "meltano-tap-hubspot"),
        "hubspot",
        "companies only, to JSON lines",
        seconds,
        _count_records(out, "companies"),
        sum(calls.values()),
        calls,
        rss,
        proxy_cpu_seconds=proxy.cpu_seconds_now() - cpu,
    )


def tap_salesforce(sandbox: SandboxProcess, proxy: VendorProxy, workdir: Path) -> ExtractorRun:
    """tap-salesforce on the REST API, Account only (its discovery, then the catalog with
    Account selected), to JSON lines. It logs in with a refresh token at
    login.salesforce.com (the proxy) and then reads the instance URL the OAuth answer names."""
    path = venv("tap-salesforce")
    bundle = trust(path, proxy.cert, Path(sandbox.info["salesforce"]["ca_bundle"]))
    env = _env(proxy, bundle)
    tap = str(path / "bin" / "tap-salesforce")
    config = workdir / "tap-salesforce.json"
    config.write_text(
        json.dumps(
            {
                "refresh_token": "sandbox-refresh-token",
                "client_id": sandbox.info["salesforce"]["client_id"],
                "client_secret": "sandbox-client-secret",
                "start_date": "2000-01-01T00:00:00Z",
                "api_type": "REST",
                "select_fields_by_default": True,
            }
        )
    )
    catalog = workdir / "tap-salesforce-catalog.json"
    run_measured(
        [tap, "--config", str(config), "--discover"],
        env=env,
        cwd=workdir,
        stdout=catalog,
        stderr=workdir / "tap-salesforce-discover.log",
    )
    _select(catalog, "Account")
    reset_counts(sandbox, "salesforce")
    out = workdir / "tap-salesforce.jsonl"
    seconds, rss = run_measured(
        [tap, "--config", str(config), "--properties", str(catalog)],
        env=env,
        cwd=workdir,
        stdout=out,
        stderr=workdir / "tap-salesforce.log",
    )
    calls = _calls(sandbox, "salesforce")
    return ExtractorRun(
        "tap-salesforce",
        installed_version(path, "tap-salesforce"),
        "salesforce",
        "Account only (REST), to JSON lines",
        seconds,
        _count_records(out, "Account"),
        sum(calls.values()),
        calls,
        rss,
    )


DLT_PIPELINE = """
import sys
import dlt
from dlt.sources.rest_api import rest_api_source

host, properties, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
source = rest_api_source({
    "client": {
        "base_url": host + "/crm/v3/",
        "auth": {"type": "bearer", "token": "bench-token"},
    },
    "resources": [{
        "name": "companies",
        "endpoint": {
            "path": "objects/companies",
            "params": {"limit": 100, "properties": properties},
            "data_selector": "results",
            "paginator": {
                "type": "cursor", "cursor_path": "paging.next.after", "cursor_param": "after",
            },
        },
    }],
})
pipeline = dlt.pipeline(
    pipeline_name="bench", pipelines_dir=workdir + "/pipelines",
    destination=dlt.destinations.duckdb(workdir + "/bench.duckdb"), dataset_name="hubspot",
)
pipeline.run(source)
with pipeline.sql_client() as client:
    print(client.execute_sql("select count(*) from companies")[0][0])
"""


def dlt_hubspot(sandbox: SandboxProcess, workdir: Path) -> ExtractorRun:
    """dlt's ``rest_api`` source, HubSpot companies (the properties crmsync reads) → DuckDB.
    dlt takes a base URL, so it calls the sandbox directly."""
    path = venv("dlt")
    script = workdir / "dlt_pipeline.py"
    script.write_text(DLT_PIPELINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["RUNTIME__LOG_LEVEL"] = "WARNING"
    reset_counts(sandbox, "hubspot")
    out = workdir / "dlt.out"
    seconds, rss = run_measured(
        [
            str(path / "bin" / "python"),
            str(script),
            sandbox.hubspot_url,
            ",".join(HUBSPOT_PROPERTIES),
            str(workdir),
        ],
        env=env,
        cwd=workdir,
        stdout=out,
        stderr=workdir / "dlt.log",
    )
    calls = _calls(sandbox, "hubspot")
    return ExtractorRun(
        "dlt rest_api → DuckDB",
        installed_version(path, "dlt"),
        "hubspot",
        "companies only, to DuckDB",
        seconds,
        int(out.read_text().split()[-1]),
        sum(calls.values()),
        calls,
        rss,
    )


def _select(catalog: Path, stream: str) -> None:
    """Select ``stream`` (and only it) in a Singer catalog, as a user does."""
    data = json.loads(catalog.read_text())
    found = False
    for entry in data["streams"]:
        chosen = entry["tap_stream_id"] == stream
        found = found or chosen
        for item in entry.get("metadata", []):
            if item.get("breadcrumb") == []:
                item.setdefault("metadata", {})["selected"] = chosen
    if not found:
        raise RuntimeError(f"the extractor's discovery has no stream {stream!r}")
    catalog.write_text(json.dumps(data))
