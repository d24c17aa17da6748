"""A sync run paces CPython's cyclic collector (sync.gc_pacing), and gives the process its
own pace back when it ends, however runs overlap."""

from __future__ import annotations

import gc
import threading

from sync.gc_pacing import RUN_THRESHOLD, paced_collections
from tests.sync.conftest import World


def test_a_run_collects_cycles_less_often_and_restores_the_pace(world: World) -> None:
    before = gc.get_threshold()
    world.harness.seed(3)
    seen: list[tuple[int, int, int]] = []
    result = world.sync(progress=lambda step, counters: seen.append(gc.get_threshold()))
    assert result.status == "succeeded"
    assert seen and all(t == (max(before[0], RUN_THRESHOLD), *before[1:]) for t in seen)
    assert gc.get_threshold() == before


def test_overlapping_runs_restore_the_pace_when_the_last_one_ends() -> None:
    before = gc.get_threshold()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    during: list[tuple[int, int, int]] = []

    def first() -> None:
        with paced_collections():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(5)
    with paced_collections():
        second_in.set()
        assert first_out.wait(5)
        during.append(gc.get_threshold())  # the first has ended: this one still paces
    thread.join(5)
    assert during == [(max(before[0], RUN_THRESHOLD), *before[1:])]
    assert gc.get_threshold() == before


def test_a_run_that_fails_restores_the_pace() -> None:
    before = gc.get_threshold()
    try:
        with paced_collections():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
