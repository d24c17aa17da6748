"""``python -m crmsync_pipedrive.emulator`` (or ``crmsync-pipedrive-emulator``): the emulated
Pipedrive company on a local port, to try the connector without a Pipedrive account.

It prints where it listens, the API token it accepts, the custom field keys it has and the
``crmsync connections add pipedrive`` command that connects an organisation to it, then
serves until Ctrl-C (or SIGTERM). Records are changed as a Pipedrive user's integration
would: through the API (``PATCH /api/v2/organizations/ID``, ``PUT
/api/v1/organizations/ID/merge``, ``POST /api/v1/webhooks``; see ``api.py``).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY, EMAIL_KEY, PHONE_KEY, PipedriveEmulator


def banner(emulator: PipedriveEmulator, seeded: int) -> str:
    """What the emulator prints as it starts."""
    return "\n".join(
        [
            "Pipedrive emulator is serving (Ctrl-C stops it)",
            f"  company URL        {emulator.url}",
            f"  API token          {emulator.api_token} (the x-api-token header)",
            f"  organizations      {seeded} seeded, each with persons",
            f"  crmsync id field   {CRMSYNC_ID_KEY}",
            f"  phone field        {PHONE_KEY}",
            f"  e-mail field       {EMAIL_KEY}",
            "",
            "Connect an organisation to it (ORG: see `crmsync orgs list`; the API token is",
            "asked at a hidden prompt, or set PIPEDRIVE_API_TOKEN):",
            f"  crmsync connections add pipedrive NAME --org ORG --company-url {emulator.url}"
            f" --external-id-key {CRMSYNC_ID_KEY}"
            f" --map phone_number={PHONE_KEY} --map email={EMAIL_KEY}",
            "",
            "Change an organization as a Pipedrive user's integration would:",
            f"  curl -X PATCH {emulator.url}/api/v2/organizations/ID"
            f" -H {shlex.quote('x-api-token: ' + emulator.api_token)}"
            " -H 'content-type: application/json' -d '{\"name\": \"New name\"}'",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="crmsync-pipedrive-emulator",
        description="A local emulator of the Pipedrive REST API, for crmsync's Pipedrive "
        "connector.",
    )
    parser.add_argument("--port", type=int, default=8445, help="TCP port (0 picks one).")
    parser.add_argument("--api-token", default="emulator-api-token", help="The token accepted.")
    parser.add_argument(
        "--organizations", type=int, default=3, help="Organizations to create (with persons)."
    )
    parser.add_argument("--persons-each", type=int, default=2, help="Persons per organization.")
    options = parser.parse_args(argv)
    if options.organizations < 0 or options.persons_each < 0:
        parser.error("--organizations and --persons-each cannot be negative")
    try:
        emulator = PipedriveEmulator(api_token=options.api_token, port=options.port)
    except OSError as error:
        parser.exit(1, f"cannot listen on 127.0.0.1:{options.port}: {error.strerror}\n")
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        emulator.seed(options.organizations, persons_each=options.persons_each)
        print(banner(emulator, options.organizations), flush=True)
        while not stop.wait(0.5):  # woken by the signal handler, or within half a second
            continue
    finally:
        emulator.close()
    return 0
