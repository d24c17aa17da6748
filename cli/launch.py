"""The ``crmsync`` executable. ``crmsync --help`` alone is printed here, from the command
list (:mod:`cli.commands`) with nothing else imported: importing Typer (and Click) costs
more than everything else that prints it. Every other command line goes to the Typer app
(:mod:`cli.main`), which prints the same help for ``crmsync --help`` (a test compares the
two at several terminal widths)."""

from __future__ import annotations

import shutil
import sys
import textwrap

from cli.commands import COMMANDS, HELP

#: the options Typer adds to the top-level command (shell completion) and Click's --help
OPTIONS = (
    ("--install-completion", "Install completion for the current shell."),
    (
        "--show-completion",
        "Show completion for the current shell, to copy it or customize the installation.",
    ),
    ("--help", "Show this message and exit."),
)


def help_text(columns: int | None = None) -> str:
    """``crmsync --help`` as Click formats it for a terminal ``columns`` wide (its
    ``HelpFormatter``: at most 80 columns, at least 50, two-space indents, a definition
    list's first column at most 30 wide)."""
    if columns is None:
        columns = shutil.get_terminal_size().columns
    width = max(min(columns, 80) - 2, 50)
    lines = ["Usage: crmsync [OPTIONS] COMMAND [ARGS]...", ""]
    for paragraph in HELP.split("\n\n"):
        lines.append(
            textwrap.fill(
                " ".join(paragraph.split()),
                width,
                initial_indent="  ",
                subsequent_indent="  ",
                replace_whitespace=False,
            )
        )
        lines.append("")
    for title, rows in (
        ("Options", OPTIONS),
        ("Commands", [(name, entry.help) for name, entry in COMMANDS.items()]),
    ):
        lines.append(f"{title}:")
        first = min(max(len(term) for term, _ in rows), 30) + 2
        for term, text in rows:
            wrapped = textwrap.wrap(text, max(width - first - 2, 10), replace_whitespace=False)
            pad = " " * (first - len(term)) if len(term) <= first - 2 else "\n" + " " * (first + 2)
            lines.append(f"  {term}{pad}{wrapped[0]}")
            lines.extend(" " * (first + 2) + line for line in wrapped[1:])
        lines.append("")
    return "\n".join(lines[:-1]) + "\n"


def configure_logs() -> None:
    """Send this command's log lines through crmsync's set-up: redacted, in
    ``CRMSYNC_LOG_FORMAT``, on stderr (stdout keeps only what was asked for), at
    ``CRMSYNC_LOG_LEVEL`` when it is set, else warnings only. Without it a warning (a record
    that failed in ``crmsync sync --wait``) reached Python's last-resort handler: its bare
    message, no ids, no redaction. The services set their own level again as they start."""
    from pydantic import ValidationError

    from sync import logs
    from sync.settings import Settings

    try:
        settings = Settings()
    except ValidationError:
        return  # the command itself reports the bad setting, with how to fix it
    level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
    logs.configure(settings, level=level)


def main() -> None:
    """The console script: ``crmsync --help`` here, anything else through Typer."""
    if sys.argv[1:] == ["--help"]:
        sys.stdout.write(help_text())
        sys.stdout.flush()
        return
    configure_logs()
    from cli.main import app

    app()
