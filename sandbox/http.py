"""Serve an ASGI app with uvicorn on a background thread (the sandbox's HTTP servers)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn


class BackgroundServer:
    """One uvicorn server on its own thread; uvicorn binds the port itself (port 0 picks a
    free one), which keeps ``TCP_NODELAY`` on accepted connections (CRM_API_NOTES)."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sandbox-{port}")
        self.host = host
        self.port = port

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._server._crmsync_loop = asyncio.get_running_loop()  # type: ignore[attr-defined]
        await self._server.serve()

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        # uvicorn waits for idle keep-alive connections to close; abort them on the
        # server's own loop so that a client still holding one does not delay the stop.
        loop = getattr(self._server, "_crmsync_loop", None)
        if loop is not None and not loop.is_closed():
            for connection in list(self._server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    loop.call_soon_threadsafe(transport.abort)
        self._server.should_exit = True
        self._thread.join(timeout=10)
