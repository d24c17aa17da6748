"""What every command shares: exit codes, ``--json`` / ``--org`` options, printing, errors.

Exit codes, the same for every ``crmsync`` command:

====  ===========================================================================
0     success
1     error (the store is unreachable, an unexpected failure)
2     usage (an unknown command or option, a missing argument: Typer's own code)
3     not found (no such organisation, customer, ...)
4     invalid input (a rule broken, a CSV file with bad rows, a duplicate)
====  ===========================================================================

Human output is a Rich table on stdout; errors go to stderr. ``--json`` prints plain JSON on
stdout (no colour, no wrapping) so that it always parses.
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


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    INVALID = 4


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table.", show_default=False)
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


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    """Print ``Error: message`` on stderr and exit with ``code``."""
    stderr().print(f"[bold red]Error:[/] {escape(message)}")
    raise typer.Exit(int(code))
