"""The embedded default's queue: kombu's filesystem transport, with whole messages only.

kombu's own filesystem channel creates a message file, then locks and writes it, while
readers neither lock nor wait: a reader that lists the folder in between moves and reads
an empty file, and the worker dies on it ("Unrecoverable error: JSONDecodeError") with the
message gone. Here a message is written under a name no reader takes (``….part``) and
renamed into place once complete, and a reader claims a message by renaming it into the
processed folder, in the same directory tree, so exactly one reader gets each message
(a rename within one file system is atomic).

Celery finds this transport by the alias :data:`ALIAS` (``crmsync-files://``).
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

ALIAS = "crmsync-files"
PARTIAL = ".part"


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write ``payload`` whole, then make it visible under its message name."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL  # "<stamp>.<queue>.msg.part": not a message of any queue
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as error:
            raise ChannelError(f"cannot add a message to {self.data_folder_out!r}") from error

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        """The oldest complete message of ``queue``, claimed by this reader alone."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another reader claimed it first
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
                if not self.store_processed:
                    os.remove(claimed)
            except OSError as error:
                raise ChannelError(f"cannot read the message {claimed!r}") from error
            return loads(bytes_to_str(payload))  # type: ignore[no-untyped-call]
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
