"""``crmsync connectors``: the CRM connectors installed here (built in, or plug-ins found
through the ``crmsync.connectors`` entry-point group)."""

from __future__ import annotations

from dataclasses import asdict

import typer

from cli.output import JsonOption, print_json, print_table

app = typer.Typer(name="connectors", help="The installed CRM connectors (built in and plug-ins).")


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List each installed connector: its key, package, version and capabilities."""
    from connectors import registry

    connectors = registry.installed()
    if as_json:
        print_json(
            [
                {
                    "key": found.key,
                    "package": found.package,
                    "version": found.version,
                    "capabilities": asdict(found.capabilities),
                    "error": found.error,
                }
                for found in connectors
            ]
        )
        return
    print_table(
        ["key", "package", "version", "capabilities"],
        [
            (
                found.key,
                found.package,
                found.version,
                found.error or ", ".join(found.capabilities.names()),
            )
            for found in connectors
        ],
        title="Connectors",
    )
