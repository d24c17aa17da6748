"""The list of ``crmsync``'s commands, as data: where each lives and its one line of help.

Kept apart from :mod:`cli.main` (which builds the Typer app) so that ``crmsync --help`` can
print the list without importing Typer at all (:mod:`cli.launch`).
"""

from __future__ import annotations

from typing import NamedTuple

#: ``crmsync --help``'s description
HELP = (
    "Two-way sync of billing customers with CRMs, matched by external ID.\n\n"
    "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 invalid input."
)


class Entry(NamedTuple):
    """Where a command lives: ``module.attribute`` is a Typer app (a group of commands)
    or a function (one command); ``help`` is what ``crmsync --help`` lists for it."""

    module: str
    attribute: str
    help: str


COMMANDS: dict[str, Entry] = {
    "sync": Entry(
        "cli.sync_cmd",
        "sync",
        "Sync a connection now: queued for a worker, or here with --wait or --plan.",
    ),
    "retry": Entry(
        "cli.failures",
        "retry",
        "Sync failed records (and connections whose run failed) again, once the cause is gone.",
    ),
    "resync": Entry(
        "cli.resync", "resync", "Pull and push one customer now, on each of its connections."
    ),
    "secret-key": Entry(
        "cli.secret",
        "app",
        "The key that encrypts stored CRM credentials (CRMSYNC_SECRET_KEY): a new one, "
        "or rotate to it.",
    ),
    "worker": Entry(
        "cli.worker",
        "worker",
        "Run a Celery worker for crmsync's tasks (syncs, webhook syncs, the dispatcher), "
        "with its metrics at http://HOST:METRICS_PORT/metrics.",
    ),
    "beat": Entry(
        "cli.worker", "beat", "Run Celery beat, which enqueues the connections that are due."
    ),
    "up": Entry(
        "cli.worker",
        "up",
        "Run the web API, beat and a worker in one process (one machine, no set-up).",
    ),
    "web": Entry(
        "cli.web",
        "web",
        "Serve the customer API (and its OpenAPI document at /docs) on HOST:PORT.",
    ),
    "db": Entry("cli.db", "app", "The store (SQLite or PostgreSQL): migrations."),
    "orgs": Entry("cli.orgs", "app", "Organisations (tenants) and their API keys."),
    "entities": Entry("cli.entities", "app", "Business entities of an organisation."),
    "customers": Entry("cli.customers", "app", "An organisation's billing customers; CSV import."),
    "connections": Entry("cli.connections", "app", "An organisation's CRM connections."),
    "connectors": Entry(
        "cli.installed", "app", "The installed CRM connectors (built in and plug-ins)."
    ),
    "runs": Entry("cli.runs", "app", "Sync runs: what each did, how long it took, why it failed."),
    "failures": Entry(
        "cli.failures",
        "app",
        "Records that failed to sync, and connections whose run failed (the dead letter).",
    ),
    "conflicts": Entry(
        "cli.conflicts", "app", "Conflicts: a field changed differently on both sides."
    ),
    "operators": Entry("cli.operators", "app", "Console operators (sign-in per organisation)."),
    "audit": Entry("cli.audit", "app", "The audit trail: who did what, to which record, when."),
    "health": Entry("cli.health", "app", "Health checks (for container healthchecks)."),
    "sandbox": Entry("cli.sandbox", "app", "The local CRM emulator (Salesforce and HubSpot APIs)."),
}
