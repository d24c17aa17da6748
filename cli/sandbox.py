"""``crmsync sandbox serve``: the local CRM emulator, for trying crmsync without a CRM.

The only face that imports ``sandbox/``: nothing else of ours does (DESIGN.md).
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import ExitCode, JsonOption, fail, print_json, stdout
from sandbox.server import Sandbox, SandboxOptions

app = typer.Typer(name="sandbox", help="The local CRM emulator (Salesforce and HubSpot APIs).")


def _parse_faults(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``salesforce.latency_seconds=0.2`` / ``hubspot.rate_limit_next=3`` → per-CRM faults."""
    faults: dict[str, dict[str, Any]] = {"salesforce": {}, "hubspot": {}}
    for spec in specs:
        target, _, assignment = spec.partition(".")
        name, sep, raw = assignment.partition("=")
        if target not in faults or not sep or not name:
            fail(
                f"bad --fault {spec!r}: use salesforce.NAME=VALUE or hubspot.NAME=VALUE",
                ExitCode.USAGE,
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        faults[target][name] = value
    return faults


def banner(info: dict[str, dict[str, str]]) -> str:
    """What ``crmsync sandbox serve`` prints: where each emulator is, what to trust and sign
    in with, and the two ``crmsync connections add`` commands that connect to it."""
    sf, hs = info["salesforce"], info["hubspot"]
    return "\n".join(
        [
            "crmsync sandbox is serving (Ctrl-C stops it)",
            f"  Salesforce  {sf['instance_url']}  (TLS)",
            f"    CA file to trust   {sf['ca_bundle']}",
            f"    organization id    {sf['organization_id']}",
            f"    OAuth token URL    {sf['token_url']}",
            f"    OAuth client       id {sf['client_id']}, secret {sf['client_secret']}"
            " (the sandbox's own test values)",
            f"    control API        {sf['control']}",
            f"  HubSpot     {hs['host']}  (any non-empty bearer token)",
            f"    app client secret  {hs['client_secret']} (signs the sandbox's webhooks)",
            f"    control API        {hs['control']}",
            "",
            "Connect an organisation to it (ORG: see `crmsync orgs list`):",
            f"  crmsync connections add salesforce NAME --org ORG --instance-url"
            f" {sf['instance_url']} --ca-bundle {shlex.quote(sf['ca_bundle'])} --organization-id"
            f" {sf['organization_id']} --client-id {sf['client_id']} --client-secret"
            f" {sf['client_secret']}",
            f"  crmsync connections add hubspot NAME --org ORG --host {hs['host']}"
            f" --access-token sandbox --client-secret {hs['client_secret']}",
        ]
    )


FaultOption = Annotated[
    list[str] | None,
    typer.Option(
        help="A fault at start-up, e.g. salesforce.latency_seconds=0.2, "
        "hubspot.rate_limit_next=3 (repeatable; change them later at /_sandbox/faults).",
    ),
]
WorkdirOption = Annotated[
    Path, typer.Option(help="Where the TLS certificate (the CA file to trust) is written.")
]
MultiCurrencyOption = Annotated[
    bool,
    typer.Option(
        help="Salesforce org with multi-currency on (Account.CurrencyIsoCode); a new org "
        "has it off."
    ),
]
Address3Option = Annotated[
    bool,
    typer.Option(
        help="HubSpot portal with the custom company property address3; a new portal has none."
    ),
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    salesforce_port: Annotated[
        int, typer.Option(help="Salesforce (TLS) port; 0 picks one.")
    ] = 8443,
    hubspot_port: Annotated[int, typer.Option(help="HubSpot (http) port; 0 picks one.")] = 8444,
    seed: Annotated[int, typer.Option(help="Data set: the same seed gives the same records.")] = 0,
    accounts: Annotated[int, typer.Option(help="Salesforce accounts to create.")] = 0,
    companies: Annotated[int, typer.Option(help="HubSpot companies to create.")] = 0,
    fault: FaultOption = None,
    hubspot_webhook_url: Annotated[
        str | None, typer.Option(help="Deliver signed HubSpot webhooks to this URL.")
    ] = None,
    salesforce_outbound_url: Annotated[
        str | None, typer.Option(help="Deliver Salesforce Outbound Messages to this URL.")
    ] = None,
    workdir: WorkdirOption = Path(".sandbox"),
    multi_currency: MultiCurrencyOption = False,
    address3: Address3Option = False,
    json_output: JsonOption = False,
) -> None:
    """Serve the Salesforce and HubSpot emulators until interrupted (Ctrl-C)."""
    faults = _parse_faults(fault or [])
    options = SandboxOptions(
        host=host,
        salesforce_port=salesforce_port,
        hubspot_port=hubspot_port,
        seed=seed,
        accounts=accounts,
        companies=companies,
        workdir=workdir.resolve(),
        multi_currency=multi_currency,
        address3=address3,
    )
    sandbox = _started(options)
    try:
        _set_up(sandbox, faults, hubspot_webhook_url, salesforce_outbound_url)
    except (TypeError, ValueError) as error:
        sandbox.stop()
        fail(f"bad fault or webhook option: {error}", ExitCode.USAGE)
    info = _connection_info(sandbox)
    if json_output:
        print_json(info)
    else:
        # one line each, never wrapped: the commands are meant to be copied
        stdout().print(banner(info), soft_wrap=True, markup=False, highlight=False)
    _serve_until_stopped(sandbox)


def _started(options: SandboxOptions) -> Sandbox:
    sandbox = Sandbox(options)
    try:
        sandbox.start()
    except (OSError, RuntimeError) as error:
        fail(f"the sandbox could not start: {error}", ExitCode.ERROR)
    return sandbox


def _set_up(
    sandbox: Sandbox,
    faults: dict[str, dict[str, Any]],
    hubspot_webhook_url: str | None,
    salesforce_outbound_url: str | None,
) -> None:
    """The start-up faults and the webhook / outbound message receivers."""
    if faults["salesforce"]:
        sandbox.salesforce.set_faults(**faults["salesforce"])
    if faults["hubspot"]:
        sandbox.hubspot.set_faults(**faults["hubspot"])
    if hubspot_webhook_url:
        sandbox.hubspot.configure_webhooks(url=hubspot_webhook_url, enabled=True)
    if salesforce_outbound_url:
        sandbox.salesforce.configure_outbound(url=salesforce_outbound_url, enabled=True)


def _connection_info(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    """What a connection to each emulator needs."""
    return {
        "salesforce": {
            "instance_url": sandbox.salesforce_url,
            "ca_bundle": str(sandbox.ca_file),
            "organization_id": sandbox.salesforce.organization_id,
            "token_url": f"{sandbox.salesforce_url}/services/oauth2/token",
            "client_id": sandbox.salesforce.client_id,
            # the emulator's fixed test value (no real org's): a connection needs it
            "client_secret": sandbox.salesforce.client_secret,
            "control": f"{sandbox.salesforce_url}/_sandbox/",
        },
        "hubspot": {
            "host": sandbox.hubspot_url,
            "access_token": "any non-empty token",
            # the emulator's fixed test value: it signs the webhooks the sandbox sends
            "client_secret": sandbox.hubspot.webhooks.config.client_secret,
            "control": f"{sandbox.hubspot_url}/_sandbox/",
        },
    }


def _serve_until_stopped(sandbox: Sandbox) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        sandbox.stop()
