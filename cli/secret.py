"""``crmsync secret-key``: a new key for ``CRMSYNC_SECRET_KEY``; ``crmsync secret-key
rotate``: every stored credential re-encrypted under the first of its keys."""

from __future__ import annotations

import typer

from cli.output import JsonOption, print_json, say

app = typer.Typer(
    name="secret-key",
    help="The key that encrypts stored CRM credentials (CRMSYNC_SECRET_KEY): a new one, "
    "or rotate to it.",
    invoke_without_command=True,
)


@app.callback()
def secret_key(ctx: typer.Context) -> None:
    """Print a new key for CRMSYNC_SECRET_KEY (it encrypts the stored CRM credentials).

    Set it once, keep it safe: stored credentials cannot be read without it. To change
    it, see `crmsync secret-key rotate --help`."""
    if ctx.invoked_subcommand is None:
        from cryptography.fernet import Fernet

        typer.echo(Fernet.generate_key().decode())


@app.command()
def rotate(as_json: JsonOption = False) -> None:
    """Re-encrypt every stored credential under the first key of CRMSYNC_SECRET_KEY.

    Without stopping anything: make a key with `crmsync secret-key`, give every process
    CRMSYNC_SECRET_KEY=NEW,OLD (the first key encrypts, each one decrypts), run this, then
    give them NEW alone. Nothing is written unless every credential can be read."""
    from cli.db import session
    from sync.crypto import rotate_credentials
    from sync.settings import get_settings

    settings = get_settings()
    with session() as opened:
        done = rotate_credentials(opened, settings)
    if as_json:
        print_json({"rotated": done.rotated, "keys": done.keys})
        return
    say(f"Re-encrypted the credentials of {done.rotated} connection(s) under the first key.")
    if done.keys > 1:
        say("Once every process has it, CRMSYNC_SECRET_KEY can hold the first key alone.")
