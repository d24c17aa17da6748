"""``crmsync``: the operator's command line.

Each group of commands lives in its own module and is registered below, in one list; a
new group is one import and one entry (``GROUPS``), a new single command one entry in
``COMMANDS``. Exit codes and ``--json`` are shared by all of them (:mod:`cli.output`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from cli import (
    conflicts,
    connections,
    customers,
    db,
    entities,
    failures,
    health,
    installed,
    operators,
    orgs,
    resync,
    runs,
    sandbox,
    secret,
    sync_cmd,
    web,
    worker,
)

app = typer.Typer(
    name="crmsync",
    help="Two-way sync of billing customers with CRMs, matched by external ID.\n\n"
    "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 invalid input.",
    no_args_is_help=True,
    # Tracebacks must never print local variables: they can hold API keys and credentials.
    pretty_exceptions_show_locals=False,
)

#: sub-command groups: ``crmsync <group> <command>``
GROUPS: tuple[typer.Typer, ...] = (
    db.app,
    orgs.app,
    entities.app,
    customers.app,
    connections.app,
    installed.app,
    runs.app,
    failures.app,
    conflicts.app,
    operators.app,
    sandbox.app,
    health.app,
)

#: single commands: ``crmsync <command>``
COMMANDS: tuple[Callable[..., Any], ...] = (
    sync_cmd.sync,
    failures.retry,
    resync.resync,
    secret.secret_key,
    worker.worker,
    worker.beat,
    worker.up,
    web.web,
)


@app.callback()
def _logging() -> None:
    # Every command logs through crmsync's set-up (redacted, JSON or readable lines on
    # stderr): warnings only, unless CRMSYNC_LOG_LEVEL asks for more. The services
    # (web, worker, beat, up) set their own level when they start.
    from sync import logs
    from sync.settings import get_settings

    settings = get_settings()
    chosen = "log_level" in settings.model_fields_set
    logs.configure(settings, level=None if chosen else "WARNING", service="cli")


for group in GROUPS:
    group.info.no_args_is_help = True
    app.add_typer(group)
for command in COMMANDS:
    app.command()(command)


if __name__ == "__main__":
    app()
