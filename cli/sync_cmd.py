"""``crmsync sync``: sync one connection now (queued for a worker, or in the foreground)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from cli.connections import ConnectionArg, require_connection, settings_and_engine
from cli.db import session
from cli.output import ExitCode, JsonOption, OrgOption, fail, print_json, print_table, say, stderr
from sync.engine import RunResult, sync_connection
from sync.errors import ConnectionPaused
from sync.plan import Plan
from sync.settings import Settings
from tasks import enqueue, work

#: the plan's sections, by the side they change
PLAN_SECTIONS: tuple[tuple[str, str], ...] = (
    ("billing_creates", "Billing: customers to create"),
    ("billing_updates", "Billing: fields to update"),
    ("links", "Links to make (CRM record <-> existing customer)"),
    ("crm_creates", "CRM: records to create"),
    ("crm_updates", "CRM: fields to update"),
    ("conflicts", "Conflicts to open"),
    ("removals", "CRM deletes, merges and restores"),
    ("ignored", "CRM records ignored (create policy)"),
    ("failures", "Records that would fail"),
    ("contact_creates", "CRM: contacts to create"),
    ("contact_updates", "CRM: contact fields to update"),
    ("contact_adoptions", "CRM: contacts of the same e-mail to link instead of creating"),
    ("contacts_from_crm", "Billing: contacts from the CRM"),
    ("contact_flags", "Billing: contacts flagged as deleted in the CRM"),
)


def sync(
    connection: ConnectionArg,
    org: OrgOption,
    full: Annotated[
        bool, typer.Option("--full", help="Read every CRM record, not only changes.")
    ] = False,
    plan: Annotated[
        bool,
        typer.Option("--plan", help="Print what the sync would do on each side; change nothing."),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Run in the foreground with a progress bar, not on a worker."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Sync a connection now: queued for a worker, or here with --wait or --plan.

    --wait runs in the foreground with a progress bar (exit 1 when the run fails); --plan
    prints what the sync would do on each side and changes nothing. A paused connection is
    refused (exit 4)."""
    settings, engine = settings_and_engine()
    with session() as opened:
        row = require_connection(opened, org, connection)
        connection_id, name, state = row.id, row.name, row.state
    if state == "paused" and not plan:
        raise ConnectionPaused(
            f"connection {name} is paused: `crmsync connections resume` it first"
        )
    if plan:
        result = sync_connection(
            engine, settings, connection_id, trigger="operator", full=full, plan=True
        )
        _print_plan(result, as_json)
    elif wait:
        _sync_here(settings, engine, connection_id, name, full=full, as_json=as_json)
    else:
        _queue_sync(settings, connection_id, name, org, full=full, as_json=as_json)


def _queue_sync(
    settings: Settings, connection_id: str, name: str, org: str, *, full: bool, as_json: bool
) -> None:
    """Queue the sync for a worker and say so."""
    task_id = enqueue.enqueue_sync(settings, connection_id, trigger="operator", full=full)
    if as_json:
        print_json({"connection_id": connection_id, "task_id": task_id, "queued": True})
        return
    say(f"Queued a {'full ' if full else ''}sync of [bold]{name}[/] (task {task_id}).")
    # nothing runs it without a worker: say which, and how to see it or run it here
    say(
        "A worker runs it (`crmsync worker`, or `crmsync up` on one machine); "
        f"`crmsync runs list --org {org.strip()}` shows it, `--wait` runs it here instead."
    )


def _sync_here(
    settings: Settings, engine: Engine, connection_id: str, name: str, *, full: bool, as_json: bool
) -> None:
    """Run the sync in the foreground with a progress display; exit 1 when it is not run
    or fails."""
    with _progress(as_json) as report:
        outcome = work.run_sync(
            settings, engine, connection_id, trigger="operator", full=full, progress=report
        )
    if isinstance(outcome, work.Skipped):
        reason = outcome.detail or _skip_reason(outcome.reason)
        fail(f"sync of {name} not run: {reason}", ExitCode.ERROR)
    print_result(outcome, as_json)
    if outcome.status != "succeeded":
        raise typer.Exit(int(ExitCode.ERROR))


def _skip_reason(reason: str) -> str:
    return {
        "busy": "another sync of this connection is running (try again when it ends)",
        "paused": "the connection is paused",
        "missing": "the connection no longer exists",
    }.get(reason, reason)


class _progress:
    """A Rich progress display on stderr, fed by the engine's progress callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=stderr(),
            transient=True,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("starting", total=None)
        return self.report

    def report(self, step: str, counters: dict[str, int]) -> None:
        if self.bar is None:
            return
        shown = ", ".join(f"{k} {v}" for k, v in counters.items() if v)
        self.bar.update(self.task, description=f"{step}: {shown or 'nothing yet'}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def print_result(result: RunResult, as_json: bool) -> None:
    data = {
        "run_id": result.run_id,
        "status": result.status,
        "counters": result.counters,
        "api_calls": result.api_calls,
        "duration_seconds": round(result.duration_seconds, 3),
        "error": result.error,
    }
    if as_json:
        print_json(data)
        return
    counters = ", ".join(f"{k} {v}" for k, v in result.counters.items() if v) or "no changes"
    colour = "green" if result.status == "succeeded" else "red"
    say(
        f"Run {result.run_id}: [{colour}]{result.status}[/] — {counters}; "
        f"{result.api_calls} API calls."
    )
    if result.error:
        stderr().print(f"[red]{result.error}[/]", markup=True, highlight=False)


def _print_plan(result: RunResult, as_json: bool) -> None:
    plan = result.plan or Plan()
    sections = plan.as_dict()
    if as_json:
        print_json({"counters": result.counters, "plan": sections, "error": result.error})
        if result.status != "succeeded":
            raise typer.Exit(int(ExitCode.ERROR))
        return
    if plan.is_empty():
        say("The plan is empty: the sync would change nothing.")
    for key, title in PLAN_SECTIONS:
        rows = sections.get(key) or []
        if not rows:
            continue
        columns = list(dict.fromkeys(k for row in rows for k in row))
        print_table(columns, [[_cell(row.get(c)) for c in columns] for row in rows], title=title)
    if result.error:
        fail(f"the plan stopped: {result.error}", ExitCode.ERROR)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False)
    return value
