"""The worker and the web server import every installed connector as they start, so that
no webhook's intake or sync imports a CRM client library on its way (each probe runs in a
fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: what the HubSpot connector's first call would import if nothing had before it
HUBSPOT = ("connectors.hubspot", "hubspot.crm.companies", "hubspot.discovery.crm.discovery")
SALESFORCE = ("connectors.salesforce", "simple_salesforce")


def _modules_after(code: str, tmp_path: Path) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CRMSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/c.db"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_load_all_imports_every_connector_and_its_client(tmp_path: Path) -> None:
    code = "from connectors import registry\nassert registry.load_all() == []"
    modules = _modules_after(code, tmp_path)
    assert set(HUBSPOT + SALESFORCE) <= modules


def test_the_web_server_loads_them_as_it_starts(tmp_path: Path) -> None:
    modules = _modules_after("from api.app import create_app\ncreate_app()", tmp_path)
    assert set(HUBSPOT + SALESFORCE) <= modules


def test_the_worker_loads_them_as_it_starts(tmp_path: Path) -> None:
    code = "import tasks.app\nfrom celery import signals\nsignals.worker_init.send(sender=None)"
    before = _modules_after("import tasks.app", tmp_path)
    assert not set(HUBSPOT) & before  # importing the app alone does not
    assert set(HUBSPOT + SALESFORCE) <= _modules_after(code, tmp_path)
