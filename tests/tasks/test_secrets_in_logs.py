"""No log line of crmsync's holds a secret (issue 9, hole 1; issue 10's structured logs).

A demo-sized run of the real processes at DEBUG level, in both log formats at once: two
``crmsync web`` (JSON and readable lines), two workers (likewise), beat, and the CLI (half
its commands in each format). Two organisations connect Salesforce and HubSpot with their
secrets on the command line, sync through the workers, receive a HubSpot webhook and a
Salesforce Outbound Message whose URL carries ``?secret=``, refuse a forged webhook, retry
past a 429, and alert a signed webhook about the conflicts opened. Then every log every
process wrote, and every command's output, is searched for every secret.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.server import Sandbox
from sync import customers
from sync.customers import CustomerIn
from sync.store.db import transaction
from tests.api.test_webhooks import SF_ORG, outbound
from tests.sync.test_alerts import AlertReceiver
from tests.tasks.conftest import HUBSPOT_SECRET, Stack, wait_for
from tests.tasks.test_worker import customer_of, runs

SF_CLIENT_SECRET = "sf-client-secret-do-not-log-4f1e"
SF_WEBHOOK_SECRET = "sf-outbound-secret-do-not-log-9a7c"
HS_ACCESS_TOKEN = "pat-na1-do-not-log-1b2c3d4e5f60"
HS_CLIENT_SECRET = HUBSPOT_SECRET + "-do-not-log-77aa"
ALERT_SECRET = "alert-secret-do-not-log-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """The processes of the run and everything they printed."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.outputs: dict[str, str] = {}

    def start(self, name: str, fmt: str, *args: str, ready: str) -> None:
        self.stack.env["CRMSYNC_LOG_FORMAT"] = fmt
        self.stack.start(name, *args, ready=ready)

    def cli(self, fmt: str, *args: str, env: dict[str, str] | None = None) -> str:
        saved = dict(self.stack.env)
        self.stack.env.update({"CRMSYNC_LOG_FORMAT": fmt, **(env or {})})
        try:
            done = self.stack.cli(*args)
        finally:
            self.stack.env.clear()
            self.stack.env.update(saved)
        label = f"cli {len(self.outputs)}: crmsync {args[0]} {args[1] if len(args) > 1 else ''}"
        self.outputs[label] = done.stdout + done.stderr
        assert done.returncode == 0, f"{label}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def logs(self) -> dict[str, str]:
        every = {p.name: p.output() for p in self.stack.processes}
        every.update(self.outputs)
        return every


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, trust_env=False, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


_CONSOLE_HEAD = re.compile(r"\S+ \[(\w+)\s*\] ")
_CONSOLE_LOGGER = re.compile(r" \[([\w.]+)\](?: |$)")
_PAIR = re.compile(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)")


def parsed(text: str) -> list[dict[str, Any]]:
    """The log lines of ``text`` as events: JSON lines as they are, readable lines
    (``TIME [level] event [logger] key=value ...``) taken apart; other lines (Celery's
    banner) left out."""
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
                continue
            except ValueError:  # a dict printed by Celery (its task result), not a log line
                pass
        head = _CONSOLE_HEAD.match(line)
        logger = _CONSOLE_LOGGER.search(line, head.end()) if head else None
        if head and logger:
            pairs = {k: v.strip("'\"") for k, v in _PAIR.findall(line, logger.end())}
            event = line[head.end() : logger.start()].strip()
            events.append({**pairs, "level": head.group(1), "event": event})
    return events


# make test-slow: make test runs the demo itself at debug level with the same secret scan
# (tests/test_demo.py); this one adds every other process (a dozen) for 30 s more
@pytest.mark.slow
@pytest.mark.timeout(600)  # a dozen processes: on a loaded 2-core machine it takes minutes
def test_a_full_run_at_debug_level_logs_no_secret(
    stack: Stack, crm: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Run(stack)
    web_json, web_console = free_port(), free_port()
    base = f"http://127.0.0.1:{web_json}"
    stack.env.update({"CRMSYNC_LOG_LEVEL": "DEBUG", "CRMSYNC_PUBLIC_BASE_URL": base})
    # the sandbox's connected app has this run's client secret (restored by the fixture)
    monkeypatch.setattr(crm.salesforce, "client_secret", SF_CLIENT_SECRET)
    sf_ids = crm.salesforce.seed(20)
    hs_ids = crm.hubspot.seed_companies(20)
    acme, globex = stack.organisation("Acme"), stack.organisation("Globex")
    with transaction(stack.engine) as session:
        # billing knows one HubSpot company by another name: a conflict when first linked
        customers.create_customer(
            session,
            globex,
            CustomerIn.model_validate(
                {"customer_name": "Not Its CRM Name", "external_id": hs_ids[0]}
            ),
        )

    run.start("web-json", "json", "web", "--port", str(web_json), ready="Uvicorn running")
    run.start("web-console", "console", "web", "--port", str(web_console), ready="Uvicorn running")
    with AlertReceiver(secret=ALERT_SECRET) as receiver:
        run.cli(
            "json", "connections", "add", "salesforce", "acme-sf", "--org", acme,
            "--instance-url", crm.salesforce_url, "--ca-bundle", str(crm.ca_file),
            "--organization-id", crm.salesforce.organization_id,
            "--client-id", crm.salesforce.client_id, "--client-secret", SF_CLIENT_SECRET,
            "--webhook-secret", SF_WEBHOOK_SECRET, "--map", "email=Billing_Email__c",
            "--setting", "backoff_base_seconds=0.01",
        )  # fmt: skip
        run.cli(
            "console", "connections", "add", "hubspot", "globex-hs", "--org", globex,
            "--host", crm.hubspot_url, "--access-token", HS_ACCESS_TOKEN,
            "--client-secret", HS_CLIENT_SECRET, "--alert-webhook", receiver.url,
            "--setting", "backoff_base_seconds=0.01",
            env={"ALERT_WEBHOOK_SECRET": ALERT_SECRET},
        )  # fmt: skip
        sf = json.loads(run.cli("json", "connections", "show", "acme-sf", "--org", acme, "--json"))
        hs = json.loads(
            run.cli("json", "connections", "show", "globex-hs", "--org", globex, "--json")
        )
        assert hs["alert_webhook"].startswith("http://127.0.0.1/")

        worker = ("worker", "--concurrency", "1", "--loglevel", "debug")
        run.start("worker-json", "json", *worker, "--hostname", "wj@%h", ready="ready.")
        run.start("worker-console", "console", *worker, "-P", "threads", "--hostname", "wc@%h",
                  ready="ready.")  # fmt: skip
        run.start("beat", "json", "beat", ready="beat: Starting")

        # the first syncs, through the workers; HubSpot answers two 429s and a 500 first
        crm.hubspot.set_faults(
            rate_limit_next=2, retry_after=0.2, server_error_next=1, server_error_status=500
        )
        run.cli("console", "sync", "acme-sf", "--org", acme)
        run.cli("json", "sync", "globex-hs", "--org", globex)
        for connection in (sf["id"], hs["id"]):
            wait_for(
                lambda c=connection: [r.status for r in runs(stack, c)][:1] == ["succeeded"],
                120,
                "the first syncs",
            )

        # a HubSpot webhook, signed, to both webs; a forged one; an Outbound Message with
        # ?secret= in its URL, to both webs
        hs_hook = f"/webhooks/hubspot/{hs['id']}"
        crm.hubspot.configure_webhooks(
            url=base + hs_hook, client_secret=HS_CLIENT_SECRET, enabled=True
        )
        crm.hubspot.edit(hs_ids[1], {"name": "Renamed By Webhook AS"})
        assert crm.hubspot.flush_webhooks(15)
        delivery = crm.hubspot.webhooks.deliveries[-1]
        sf_hook = f"/webhooks/salesforce/{sf['id']}"
        crm.salesforce.configure_outbound(
            url=base + sf_hook, secret=SF_WEBHOOK_SECRET, secret_mode="query", retry_seconds=0.2
        )
        crm.salesforce.edit("Account", sf_ids[1], {"Name": "Outbound Renamed Ltd"})
        assert crm.salesforce.wait_for_delivery(15)
        message = crm.salesforce.outbound.stats.bodies[-1]
        with httpx.Client(trust_env=False, timeout=30) as client:
            console_base = f"http://127.0.0.1:{web_console}"
            replay = client.post(
                console_base + hs_hook, content=delivery.body, headers=delivery.headers
            )
            assert replay.status_code == 200, replay.text
            replay = client.post(
                f"{console_base}{sf_hook}?secret={SF_WEBHOOK_SECRET}",
                content=message,
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )
            assert replay.status_code == 200, replay.text
            forged = {**dict(delivery.headers), "X-HubSpot-Signature-v3": "Zm9yZ2Vk"}
            for web in (base, console_base):
                assert (
                    client.post(web + hs_hook, content=delivery.body, headers=forged).status_code
                    == 401
                )
                wrong = client.post(f"{web}{sf_hook}?secret=not-the-secret", content=message)
                assert wrong.status_code == 401
        wait_for(
            lambda: all(
                (c := customer_of(stack, conn, crm_id)) is not None and c.customer_name == name
                for conn, crm_id, name in (
                    (hs["id"], hs_ids[1], "Renamed By Webhook AS"),
                    (sf["id"], sf_ids[1], "Outbound Renamed Ltd"),
                )
            ),
            60,
            "both webhooks' changes in billing",
        )
        # beat's dispatcher sends the conflict digest; a worker delivers it, signed
        wait_for(lambda: receiver.received, 60, "the conflict digest alert")
        assert receiver.received[0]["crmsync"]["alert"] == "conflicts_opened"
        run.cli("console", "conflicts", "list", "--org", globex)
        run.cli("json", "runs", "list", "--org", acme, "--json")

    for process in stack.processes:
        process.stop()
    secrets = {
        "Salesforce client secret": SF_CLIENT_SECRET,
        "Salesforce webhook secret": SF_WEBHOOK_SECRET,
        "HubSpot access token": HS_ACCESS_TOKEN,
        "HubSpot client secret": HS_CLIENT_SECRET,
        "alert webhook URL": receiver.url.split("/", 3)[-1],
        "alert signing secret": ALERT_SECRET,
        "CRMSYNC_SECRET_KEY": stack.env["CRMSYNC_SECRET_KEY"],
        **{f"Salesforce access token {i}": t for i, t in enumerate(sorted(crm.salesforce.tokens))},
    }
    assert len(crm.salesforce.tokens) >= 1
    logs = run.logs()
    lines = sum(text.count("\n") + 1 for text in logs.values())
    hits = {
        (what, name): text.count(secret)
        for what, secret in secrets.items()
        for name, text in logs.items()
        if secret in text
    }
    print(
        f"\nsecret scan: {len(secrets)} secrets x {len(logs)} logs ({lines} lines, "
        f"{sum(len(t) for t in logs.values()):,} characters): {sum(hits.values())} hits"
    )
    assert hits == {}

    # the access log keeps the requests, without the Outbound Message's query string
    for name in ("web-json", "web-console"):
        assert f"POST {sf_hook}?[redacted]" in logs[name], name
    # each line carries the ids of the work it describes, in either format
    by_event: dict[str, list[dict[str, Any]]] = {}
    for event in (e for text in logs.values() for e in parsed(text)):
        by_event.setdefault(event["event"], []).append(event)
    for started in by_event["run started"] + by_event["run finished"]:
        assert {"organisation_id", "connection_id", "run_id"} <= set(started)
    assert {e["connection_id"] for e in by_event["run finished"]} >= {sf["id"], hs["id"]}
    opened = [e for e in by_event["conflict opened"] if e["connection_id"] == hs["id"]]
    assert any(e["field"] == "customer_name" for e in opened)
    assert all(e["run_id"] and e["organisation_id"] == globex for e in opened)
    assert by_event["rate-limit wait"] and by_event["retrying CRM call"]
    for line in by_event["rate-limit wait"] + by_event["retrying CRM call"]:
        assert line["connection_id"] == hs["id"] and line["crm"] == "hubspot"
        # the pull runs on a thread of its own; its lines carry the run's ids all the same
        assert line.get("run_id") and line.get("organisation_id") == globex, line
    assert {str(e["status"]) for e in by_event["webhook refused"]} == {"401"}
    assert all(e.get("reason") and e.get("connection_id") for e in by_event["webhook refused"])
    json_events = [e for n in ("web-json", "worker-json", "beat") for e in parsed(logs[n])]
    assert json_events and all("timestamp" in e and "level" in e for e in json_events)


def test_crmsync_up_redacts_the_outbound_message_url_in_its_access_log(
    stack: Stack, tmp_path: Path
) -> None:
    """``crmsync up`` (the embedded default: SQLite, no Redis) serves the same intake."""
    port = free_port()
    env = {
        k: v
        for k, v in stack.env.items()
        if k not in ("CRMSYNC_BROKER_URL", "CRMSYNC_DATABASE_URL")
    }
    env.update(
        {
            "CRMSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'up.db'}",
            "CRMSYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CRMSYNC_LOG_FORMAT": "console",
        }
    )
    stack.env.clear()
    stack.env.update(env)
    run = Run(stack)
    run.cli("console", "db", "upgrade")
    org = json.loads(run.cli("console", "orgs", "create", "Acme", "--json"))["id"]
    run.cli(
        "console", "connections", "add", "salesforce", "sf", "--org", org, "--no-check",
        "--instance-url", "https://sf.example.com", "--organization-id", SF_ORG,
        "--access-token", HS_ACCESS_TOKEN, "--webhook-secret", SF_WEBHOOK_SECRET,
    )  # fmt: skip
    connection = json.loads(run.cli("console", "connections", "show", "sf", "--org", org, "--json"))
    run.start("up", "console", "up", "--port", str(port), "--loglevel", "debug", ready="ready.")
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "crmsync up's web API")
    body = outbound(SF_ORG)
    hook = f"/webhooks/salesforce/{connection['id']}"
    answer = httpx.post(
        f"http://127.0.0.1:{port}{hook}?secret={SF_WEBHOOK_SECRET}",
        content=body,
        headers={"Content-Type": "text/xml"},
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    for process in stack.processes:
        process.stop()
    logs = run.logs()
    assert f"POST {hook}?[redacted]" in logs["up"]
    for text in logs.values():
        assert SF_WEBHOOK_SECRET not in text
        assert HS_ACCESS_TOKEN not in text
