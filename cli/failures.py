"""``crmsync failures`` (the dead letter) and ``crmsync retry``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.connections import require_connection, settings_and_engine
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
from sync.failures import describe_failure, retry_failures
from sync.store import sync_repository as repo
from tasks.work import connection_gate

app = typer.Typer(name="failures", help="Records that failed to sync (the dead letter).")


@app.command("list")
def list_(
    org: OrgOption,
    all_: Annotated[
        bool, typer.Option("--all", help="Retried and resolved failures too, not only open.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List failures, newest first (open ones unless --all)."""
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
                r["direction"],
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
    """Show one failure with the CRM's words and the record's payload."""
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
    """Sync failed records again, now that the cause is fixed.

    Choose FAILURE ids, --run RUN or --all. Exit 1 when some still fail, 3 when a failure
    is not found."""
    chosen = sum([bool(failure_ids), run is not None, all_])
    if chosen != 1:
        fail("choose one: FAILURE id(s), --run RUN, or --all", ExitCode.USAGE)
    settings, engine = settings_and_engine()
    with session() as opened:
        require_organisation(opened, org)
        connection_id = require_connection(opened, org, connection).id if connection else None
        targets = repo.open_failures(
            opened, org.strip(), connection_id=connection_id, run_id=run, failure_ids=failure_ids
        )
        connection_ids = sorted({f.connection_id for f in targets})
    if failure_ids and len(targets) != len(set(failure_ids)):
        missing = sorted(set(failure_ids) - {f.id for f in targets})
        fail(f"no open failure(s) {', '.join(missing)}", ExitCode.NOT_FOUND)
    outcome_runs = []
    retried = recovered = still = 0
    # one retry per connection, each with its connection's shared rate budget
    for conn_id in connection_ids:
        outcome = retry_failures(
            engine,
            settings,
            org.strip(),
            failure_ids=[f.id for f in targets if f.connection_id == conn_id],
            connection_id=conn_id,
            gate=connection_gate(settings, engine, conn_id),
        )
        retried += outcome.retried
        recovered += outcome.recovered
        still += outcome.still_failing
        outcome_runs += [
            {"run_id": r.run_id, "status": r.status, "error": r.error} for r in outcome.runs
        ]
    failed_runs = [r for r in outcome_runs if r["status"] != "succeeded"]
    data = {
        "retried": retried,
        "recovered": recovered,
        "still_failing": still,
        "runs": outcome_runs,
    }
    if as_json:
        print_json(data)
    elif not retried:
        say("No open failures to retry.")
    else:
        say(f"Retried {retried}: {recovered} recovered, {still} still failing.")
        for r in failed_runs:
            say(f"Run {r['run_id']} failed: {r['error']}")
    if still or failed_runs:
        raise typer.Exit(int(ExitCode.ERROR))
