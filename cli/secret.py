"""``crmsync secret-key``: a new key for ``CRMSYNC_SECRET_KEY``."""

from __future__ import annotations

import typer

from sync.crypto import new_secret_key


def secret_key() -> None:
    """Print a new key for CRMSYNC_SECRET_KEY (it encrypts the stored CRM credentials).

    Set it once, keep it safe: stored credentials cannot be read without it."""
    typer.echo(new_secret_key())
