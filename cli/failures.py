"""``crmsync failures`` (the dead letter) and ``crmsync retry``."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from cli.connections import connection_option, settings_and_engine
from cli.db import session
from cli.orgs import require_organisation
from cli.output import (
    ExitCode,
    JsonOption,
    OrgOption,
    fail,
    print_json,
    print_record,
    print_table,
    say,
)
from sync import operator_actions
from sync.failures import RetryOutcome, describe_failure
from sync.store import sync_repository as repo
from tasks.work import connection_gate, retry_connection

app = typer.Typer(
    name="failures",
    help="Records that failed to sync, and connections whose run failed (the dead letter).",
)


@app.command("list")
def list_(
    org: OrgOption,
    all_: Annotated[
        bool, typer.Option("--all", help="Retried and resolved failures too, not only open.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List failures, newest first (open ones unless --all): records, and connections whose
    run failed as a whole (direction "connection": every record waits for them)."""
    with session() as opened:
        require_organisation(opened, org)
        found = repo.list_failures(
            opened, org.strip(), status=None if all_ else "open", limit=limit
        )
        rows = [describe_failure(f) for f in found]
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "direction", "crm_id", "customer_id", "error", "attempts", "status"],
        [
            (
                r["id"],
                "connection (run failed)" if r["level"] == "connection" else r["direction"],
                r["crm_id"],
                r["customer_id"],
                f"{r['error_kind']} {r['error_code']}: {r['error_message']}",
                r["attempts"],
                r["status"],
            )
            for r in rows
        ],
        title="Failures",
    )


@app.command()
def show(
    failure_id: Annotated[str, typer.Argument(help="The failure's id.", show_default=False)],
    org: OrgOption,
    as_json: JsonOption = False,
) -> None:
    """Show one failure with the CRM's words and the record's payload (a connection's: the
    failed run's scope and trigger)."""
    with session() as opened:
        require_organisation(opened, org)
        failure = repo.get_failure(opened, org.strip(), failure_id.strip())
        if failure is None:
            fail(f"no failure {failure_id!r} in this organisation", ExitCode.NOT_FOUND)
        data = describe_failure(failure)
    if as_json:
        print_json(data)
        return
    print_record(
        {k: json.dumps(v, ensure_ascii=False) if k == "payload" else v for k, v in data.items()},
        title="Failure",
    )


def retry(
    org: OrgOption,
    failure_ids: Annotated[
        list[str] | None,
        typer.Argument(help="The failures to retry (ids).", show_default=False),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Every open failure of this run.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every open failure.")] = False,
    connection: Annotated[
        str | None, typer.Option(help="Only this connection's failures (id or name).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sync failed records (and connections whose run failed) again, once the cause is gone.

    A connection whose run failed is synced again as a whole (under its lock), and its failed
    records after it.

    Choose FAILURE ids, --run RUN or --all. Exit 1 when some still fail, 3 when a failure
    is not found."""
    if sum([bool(failure_ids), run is not None, all_]) != 1:
        fail("choose one: FAILURE id(s), --run RUN, or --all", ExitCode.USAGE)
    settings, engine = settings_and_engine()
    connection_id = connection_option(org, connection)
    outcome = operator_actions.retry(
        engine,
        settings,
        org.strip(),
        actor=f"cli:{getpass.getuser()}",
        failure_ids=failure_ids or None,
        run_id=run,
        connection_id=connection_id,
        gate_for=lambda connection_id: connection_gate(settings, engine, connection_id),
        run_connection=lambda connection_id: retry_connection(settings, engine, connection_id),
    )
    _print_retry(outcome, as_json)
    if outcome.still_failing or outcome.failed_runs:
        raise typer.Exit(int(ExitCode.ERROR))


def _print_retry(outcome: RetryOutcome, as_json: bool) -> None:
    if as_json:
        runs = [{"run_id": r.run_id, "status": r.status, "error": r.error} for r in outcome.runs]
        print_json(
            {
                "retried": outcome.retried,
                "recovered": outcome.recovered,
                "still_failing": outcome.still_failing,
                "runs": runs,
            }
        )
    elif not outcome.retried:
        say("No open failures to retry.")
    else:
        say(
            f"Retried {outcome.retried}: {outcome.recovered} recovered, "
            f"{outcome.still_failing} still failing."
        )
        for failed in outcome.failed_runs:
            say(failed[0].upper() + failed[1:])
