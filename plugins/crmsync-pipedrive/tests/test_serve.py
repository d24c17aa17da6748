"""The emulator as a program (``python -m crmsync_pipedrive.emulator``): it says where it
listens and how to connect crmsync to it, serves the seeded company, and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY


def test_the_emulator_serves_from_the_command_line_until_stopped() -> None:
    program = subprocess.Popen(
        [sys.executable, "-m", "crmsync_pipedrive.emulator", "--port", "0",
         "--api-token", "cli-token", "--organizations", "4", "--persons-each", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert program.stdout is not None
        lines = [program.stdout.readline() for _ in range(12)]
        url = next(line.split()[-1] for line in lines if "company URL" in line)
        command = next(line for line in lines if "connections add pipedrive" in line)
        assert (
            f"--company-url {url}" in command and f"--external-id-key {CRMSYNC_ID_KEY}" in command
        )
        answer = httpx.get(f"{url}/api/v1/organizations", headers={"x-api-token": "cli-token"})
        assert answer.status_code == 200 and len(answer.json()["data"]) == 4
        persons = httpx.get(f"{url}/api/v1/persons", headers={"x-api-token": "cli-token"})
        assert len(persons.json()["data"]) == 4
        refused = httpx.get(f"{url}/api/v1/organizations", headers={"x-api-token": "wrong"})
        assert refused.status_code == 401
    finally:
        program.send_signal(signal.SIGTERM)
        _, errors = program.communicate(timeout=10)  # reads and closes its pipes
    assert program.returncode == 0, errors


def test_a_port_in_use_is_a_clear_error() -> None:
    from crmsync_pipedrive.emulator import PipedriveEmulator

    with PipedriveEmulator() as running:
        port = running.url.rsplit(":", 1)[1]
        done = subprocess.run(
            [sys.executable, "-m", "crmsync_pipedrive.emulator", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
