"""The emulated Pipedrive company every test of this package talks to, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from crmsync_pipedrive.emulator import PipedriveEmulator
from harness import PipedriveHarness


@pytest.fixture(scope="session")
def emulator() -> Iterator[PipedriveEmulator]:
    with PipedriveEmulator() as running:
        yield running


@pytest.fixture
def harness(emulator: PipedriveEmulator) -> PipedriveHarness:
    made = PipedriveHarness(emulator)
    made.reset()
    return made
