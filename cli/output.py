"""What every command shares: exit codes, ``--json`` / ``--org`` options, printing, errors.

Exit codes, the same for every ``crmsync`` command:

====  ===========================================================================
0     success
1     error (the store or the CRM is unreachable, a run failed, an unexpected failure)
2     usage (an unknown command or option, a missing argument: Typer's own code)
3     not found (no such organisation, customer, ...)
4     invalid input (a rule broken, a CSV file with bad rows, a duplicate, a conflict
      that cannot be resolved as asked, a paused connection, credentials the CRM refused)
====  ===========================================================================

Each error of the domain's tree (:mod:`sync.errors`) and of the connectors'
(:mod:`connectors.errors`) has its code in one table, :data:`EXIT_CODES`; one handler
(:func:`report_error`, called by ``cli.main`` around every command) prints it and exits.

Human output is a Rich table on stdout; errors go to stderr. ``--json`` prints plain JSON on
stdout (no colour, no wrapping) so that it always parses, and an error as one JSON line on
stderr: ``{"error": KIND, "message": ..., "exit_code": N}``, KIND being the error's class in
snake case (``customer_not_found``) or the exit code's name (``not_found``, ``usage``). Stdout
holds only what the command was asked for, so a script reads it only when the exit code is 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import IntEnum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.errors import AuthError, ConfigError, ConnectorError
from sync.errors import (
    AlertDeliveryFailed,
    ConflictError,
    ConnectionPaused,
    Duplicate,
    InvalidInput,
    NotFound,
    SecretKeyMissing,
    SignInError,
    StaleRun,
    StoreNotCurrent,
    SyncError,
)


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    INVALID = 4


# Every error class's exit code, once: an error takes the code of its nearest class here.
EXIT_CODES: dict[type[Exception], ExitCode] = {
    NotFound: ExitCode.NOT_FOUND,
    InvalidInput: ExitCode.INVALID,
    Duplicate: ExitCode.INVALID,
    ConflictError: ExitCode.INVALID,
    ConnectionPaused: ExitCode.INVALID,
    SignInError: ExitCode.INVALID,
    StaleRun: ExitCode.ERROR,
    SecretKeyMissing: ExitCode.ERROR,
    # as a store without its tables: nothing ran, the store must be migrated first
    StoreNotCurrent: ExitCode.ERROR,
    AlertDeliveryFailed: ExitCode.ERROR,
    # the CRM's errors: unreachable, rate-limited or out of allowance is 1 (try again
    # later); credentials or a set-up the CRM refuses is 4 (the operator must fix them)
    ConnectorError: ExitCode.ERROR,
    AuthError: ExitCode.INVALID,
    ConfigError: ExitCode.INVALID,
}


def exit_code_for(error: type[SyncError] | type[ConnectorError]) -> ExitCode:
    """The exit code of an error class: that of its nearest class in :data:`EXIT_CODES`."""
    for cls in error.__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    raise KeyError(f"{error.__name__} has no exit code in EXIT_CODES")


# Whether the running command was given --json (set by the option itself, so that an error
# raised anywhere in the command is printed as JSON too); cli.main resets it per command.
_json_errors = False


def _remember_json(value: bool) -> bool:
    global _json_errors
    _json_errors = bool(value)
    return value


def reset_json_errors() -> None:
    _remember_json(False)


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON instead of a table (errors too).",
        show_default=False,
        callback=_remember_json,
    ),
]
OrgOption = Annotated[
    str,
    typer.Option(
        "--org",
        help="The organisation's id (see `crmsync orgs list`).",
        show_default=False,
        metavar="ORG_ID",
    ),
]


def stdout() -> Console:
    # A new console each time: it binds to the sys.stdout of the moment (tests swap it).
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped into grep or a file: Rich's 80-column default would fold ids and names.
        console.width = 200
    return console


def stderr() -> Console:
    # soft_wrap: an error line stays one line (greppable), whatever the terminal's width
    return Console(stderr=True, highlight=False, soft_wrap=True)


def when(moment: datetime | None) -> str | None:
    """A timestamp for output: ISO 8601 to the second."""
    return moment.isoformat(timespec="seconds") if moment else None


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (UUIDs, dates and the like as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def print_table(
    columns: Sequence[str], rows: Iterable[Iterable[Any]], *, title: str | None = None
) -> None:
    """A table on stdout; ``None`` shows as empty. Cells fold rather than being cut."""
    table = Table(title=title)
    for column in columns:
        if column == "id":  # ids are copied into the next command: never fold them
            table.add_column(column, no_wrap=True, min_width=36)
        else:
            table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*("" if value is None else escape(str(value)) for value in row))
        count += 1
    if count:
        stdout().print(table)
    else:
        stdout().print(f"No {escape(title or 'rows').lower()}.")


def print_record(record: Mapping[str, Any], *, title: str | None = None) -> None:
    """One record as a two-column (field, value) table."""
    print_table(["field", "value"], record.items(), title=title)


def say(message: str) -> None:
    """A line for the operator on stdout (Rich markup allowed)."""
    stdout().print(message)


def fail(message: str, code: ExitCode = ExitCode.ERROR, *, kind: str | None = None) -> NoReturn:
    """Print ``Error: message`` on stderr (with ``--json``: the error as a JSON line) and exit
    with ``code``. ``kind`` names the error for JSON (by default, the code's name)."""
    if _json_errors:
        error = {"error": kind or code.name.lower(), "message": message, "exit_code": int(code)}
        typer.echo(json.dumps(error, ensure_ascii=False), err=True)
    else:
        stderr().print(f"[bold red]Error:[/] {escape(message)}")
    raise typer.Exit(int(code))


def report_error(error: SyncError | ConnectorError) -> NoReturn:
    """The one handler for the errors of both trees: its message and its exit code."""
    message = str(error)
    if isinstance(error, ConnectorError):
        message = f"the CRM refused: {type(error).__name__}: {error}"
    fail(message, exit_code_for(type(error)), kind=_snake(type(error).__name__))


def _snake(name: str) -> str:
    """``CustomerNotFound`` as ``customer_not_found``: an error's kind in JSON."""
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
