"""``crmsync web``: serve the customer API with uvicorn."""

from __future__ import annotations

import typer


def web(
    host: str = typer.Option("127.0.0.1", help="The interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8000, min=1, max=65535, help="The TCP port to listen on."),
) -> None:
    """Serve the customer API (and its OpenAPI document at /docs) on HOST:PORT."""
    import uvicorn

    # By name, as a factory: the faces (cli, api) do not import each other, and each worker
    # process builds its app from the settings of its own environment.
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, proxy_headers=True)
