"""The embedded default's file queue: every message is read whole, by exactly one reader,
while writers and readers run side by side (kombu's own filesystem channel let a reader
take a file before its writer had written it: an empty message, and a dead worker)."""

from __future__ import annotations

import logging
import multiprocessing
import queue
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from sync.settings import Settings
from tasks import file_queue
from tasks.app import create_celery

MESSAGES = 600


def _options(folder: Path) -> dict[str, Any]:
    for sub in ("messages", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "messages"),
        "data_folder_out": str(folder / "messages"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def _read(folder: str, out: Any, done: Any) -> None:
    with Connection(f"{file_queue.ALIAS}://", transport_options=_options(Path(folder))) as conn:
        inbox = conn.SimpleQueue("work")
        while True:
            try:
                message = inbox.get(timeout=0.05)
            except queue.Empty:
                if done.is_set():
                    try:
                        message = inbox.get(timeout=0.5)
                    except queue.Empty:
                        return
                else:
                    continue
            out.put(message.payload["n"])
            message.ack()


def test_readers_beside_a_writer_get_every_message_once_and_whole(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    done = context.Event()
    readers = [context.Process(target=_read, args=(str(tmp_path), out, done)) for _ in range(2)]
    for reader in readers:
        reader.start()
    with Connection(f"{file_queue.ALIAS}://", transport_options=_options(tmp_path)) as conn:
        outbox = conn.SimpleQueue("work")
        for n in range(MESSAGES):
            outbox.put({"n": n, "padding": "x" * 2000})
    done.set()
    for reader in readers:
        reader.join(timeout=120)
        assert reader.exitcode == 0, "a reader died (an empty or partial message?)"
    received = []
    while True:
        try:
            received.append(out.get(timeout=1))
        except queue.Empty:
            break
    assert sorted(received) == list(range(MESSAGES))
    assert list((tmp_path / "messages").iterdir()) == []


def test_the_embedded_broker_connects_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'crmsync.db'}", broker_url="")
    with caplog.at_level(logging.WARNING, logger="kombu"):
        create_celery(settings).send_task("crmsync.probe")  # as `crmsync sync` queues a run
    assert (tmp_path / ".crmsync" / "queue" / "messages").is_dir()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("kombu")] == []
