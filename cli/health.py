"""``crmsync health``: checks for container healthchecks and operators.

    crmsync health ready     the store answers, its migrations are at head, the broker answers
    crmsync health beat      beat has sent its dispatcher recently (its heartbeat is fresh)

Exit 0 when healthy, 1 when not, with the reason.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.output import ExitCode, JsonOption, fail, print_json, say

app = typer.Typer(name="health", help="Health checks (for container healthchecks).")


@app.command()
def ready(as_json: JsonOption = False) -> None:
    """Check the database, its migrations and the broker (as /readyz does)."""
    from sync.settings import get_settings
    from tasks.health import readiness

    result = readiness(get_settings(), detail=True)
    if as_json:
        print_json({"ready": result.ready, "checks": result.checks, "failed": result.failed})
    else:
        for name, answer in result.checks.items():
            say(f"{name}: {answer}")
    if not result.ready:
        raise typer.Exit(ExitCode.ERROR)


@app.command()
def beat(
    max_age: Annotated[
        float | None,
        typer.Option(
            "--max-age",
            min=0,
            help="Seconds the heartbeat may be old (default: 4 dispatch intervals, at least 60).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check that beat is alive and dispatching: it renews a heartbeat each time it hands
    the dispatcher to the broker (run it where beat runs: the heartbeat is a local file)."""
    from sync.settings import get_settings
    from tasks.beat import default_max_age, heartbeat_age

    settings = get_settings()
    limit = default_max_age(settings) if max_age is None else max_age
    age = heartbeat_age(settings)
    if age is None:
        fail("beat has not sent a task from this host yet (no heartbeat)", ExitCode.ERROR)
    if age > limit:
        fail(f"beat's last dispatch was {age:.0f}s ago (more than {limit:.0f}s)", ExitCode.ERROR)
    if as_json:
        print_json({"healthy": True, "last_dispatch_seconds_ago": age, "max_age_seconds": limit})
        return
    say(f"beat: last dispatch {age:.1f}s ago")
