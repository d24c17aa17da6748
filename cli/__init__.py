"""The operator's commands: ``crmsync ...`` (Typer; :mod:`cli.main` assembles them)."""
