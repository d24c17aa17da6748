"""``crmsync``: the operator's command line.

Each group of commands lives in its own module, listed below in :data:`COMMANDS` by name,
module, attribute and one line of help. A module is imported only when its command runs:
``crmsync --help`` imports none of them (no SQLAlchemy, Celery, uvicorn or sandbox just to
print help), and each command imports what it uses. A new group is one entry (its Typer
app), a new single command one entry (its function); ``tests/cli/test_imports.py`` checks
that every entry's help is the module's own. Exit codes and ``--json`` are shared by all
of them (:mod:`cli.output`), and so is error handling: :meth:`LazyCommands.invoke` is the one
place that turns an error into its message and exit code.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from cli.commands import COMMANDS, HELP, Entry


def load(name: str) -> Any:
    """The click command for ``name``, importing its module now."""
    entry = COMMANDS[name]
    target = getattr(importlib.import_module(entry.module), entry.attribute)
    command: Any
    if isinstance(target, typer.Typer):
        # a group alone shows its help, unless it does something of its own (secret-key)
        target.info.no_args_is_help = not target.info.invoke_without_command
        command = typer.main.get_group(target)
    else:
        # shell completion is the top-level command's option, not each command's
        single = typer.Typer(add_completion=False)
        single.command(name=name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(TyperGroup):
    """Lists every command from :data:`COMMANDS` and imports one only when it is asked
    for (to run it, or to show its own ``--help``)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load(cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: Any) -> Any:
        """Run the command; an error of the domain's or the connectors' tree ends it with
        its message and exit code (:func:`cli.output.report_error`), wherever it was raised,
        and so does a bad setting in the environment (exit 1, by variable)."""
        from pydantic import ValidationError

        from cli.output import ExitCode, fail, report_error, reset_json_errors
        from connectors.errors import ConnectorError
        from sync.errors import SyncError

        reset_json_errors()
        try:
            return super().invoke(ctx)
        except (SyncError, ConnectorError) as error:
            report_error(error)
        except ValidationError as error:
            if error.title != "Settings":
                raise
            fail(settings_problem(error), ExitCode.ERROR, kind="bad_setting")

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list of ``crmsync --help``, from :data:`COMMANDS` alone."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.help) for name, entry in COMMANDS.items()])


def settings_problem(error: Any) -> str:
    """What is wrong with the environment's settings (a pydantic ``ValidationError`` of
    :class:`sync.settings.Settings`), by variable, and where to fix it. The values are left
    out: one may be a secret (``CRMSYNC_SECRET_KEY``) or a URL with a password."""
    problems = "; ".join(
        f"CRMSYNC_{'_'.join(str(part) for part in problem['loc']).upper()}: "
        f"{problem['msg'].removeprefix('Value error, ')}"
        for problem in error.errors(include_url=False, include_input=False)
    )
    return f"bad setting: {problems} (set in the environment or .env)"


app = typer.Typer(
    name="crmsync",
    help=HELP,
    cls=LazyCommands,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    # Tracebacks must never print local variables: they can hold API keys and credentials.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def crmsync() -> None:
    # no options of its own: a Typer app with no commands registered up front needs a
    # callback to be a group (its help is the app's)
    return None


__all__ = ["COMMANDS", "Entry", "app", "load"]

if __name__ == "__main__":
    app()
