"""CRM faults: each sync completes, loses nothing, and stays within a stated call bound.

A CRM (HubSpot, Salesforce) holds ``records`` companies with their contacts; the billing
side holds ``billing`` customers of its own. One two-way sync links every CRM record to a
new customer and creates every billing customer in the CRM, through the worker's own path
(``tasks.work.run_sync``: its Redis lock and shared rate gate, the engine, PostgreSQL) with
the real client libraries against the sandbox over HTTP, while the sandbox injects:

- a storm of rate-limit answers: HubSpot 429s without and with ``Retry-After``; Salesforce
  has no 429 in its REST API: its short-window refusal is 403 ``REQUEST_LIMIT_EXCEEDED``
  "ConcurrentRequests" and never carries ``Retry-After``
  (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm);
- 20% of answers 5xx;
- hangs past the connection's (short) request time-out;
- expired tokens: Salesforce sessions expire every few requests (401 ``INVALID_SESSION_ID``,
  the connector logs in again); a HubSpot token expires (401: a private-app token cannot be
  refreshed, so the run stops at once; ``crmsync retry`` recovers it once the token is fixed);
- partial batch failures: some records of a push batch are refused.

The bound. ``minimum`` is the calls a fault-free sync of the same world makes (measured once
per CRM and size). Each fault allows a stated number of calls more: one per injected 429 or
hang (a rate-limit answer is waited out and asked again; a time-out is retried once per
hang); for a rate ``p`` of 5xx answers, the expected retries ``minimum * p / (1 - p)`` plus
five standard deviations; for a session that expires every ``n`` requests, at most two
refused calls per expiry (the engine's two threads), so ``minimum * n / (n - 2)``. A 429
of the CRM's own limits (HubSpot's burst and search limits) is traffic like an injected one:
one call more each, counted by the sandbox apart from the faults. API calls are what the
CRM's allowance counts: Salesforce's OAuth token requests are not among them. The test
asserts calls <= bound, and that crmsync's own count equals the requests the sandbox served
(API calls and logins: no retry hidden in a client library), and prints them.

Afterwards the faults are cleared; every record refused is in ``crmsync failures list`` with
the CRM's reason, ``crmsync retry --all`` recovers each, and then for every CRM record and
every billing customer there is exactly one link, and each mapped field is equal on both
sides.

Each fault is also made to outlast the run (a storm past the run's rate-limit time budget,
5xx or hangs past every try, a session that cannot be renewed): the run fails as a whole,
within a stated bound of calls (budget / wait + 1 for a storm, the tries per call for 5xx
and hangs, one for a refused token); ``crmsync failures list`` shows the connection's
failure with the CRM's words and the run; once the fault is gone ``crmsync retry --all``
syncs the connection again (no more calls than a first sync) and nothing is lost.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from cli.main import app
from connectors.base import Connector
from sandbox.server import Sandbox
from sync import organisations
from sync.connections import ConnectionSpec, add_connection, open_connector
from sync.customer import Address, CustomerIn, flatten
from sync.customers import create_customer, to_public
from sync.engine import RunResult
from sync.match import canonical
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import Conflict, CustomerRow, LinkRow
from tasks import work
from tests.conftest import Figures, _truncate_all
from tests.tasks.conftest import HUBSPOT_SECRET, Stack

SMALL = {"records": 200, "billing": 30, "storm": 20, "storm_retry_after": 2, "hangs": 1}
FULL = {"records": 3000, "billing": 600, "storm": 200, "storm_retry_after": 10, "hangs": 6}
SIZES = [
    pytest.param(SMALL, id="small"),
    pytest.param(FULL, id="full", marks=pytest.mark.slow),
]

#: Salesforce query pages of this many rows (it may serve fewer than batchSize asks), so a
#: small org takes enough calls for a rate of faults to hit some
SALESFORCE_PAGE = 50
#: the connection's time-out in the hang cases, and how long the sandbox hangs (past it)
HANG_TIMEOUT_SECONDS = 2.0
HANG_SECONDS = 4.0
#: a Salesforce session expires every this many API requests in the expiry case
EXPIRE_EVERY = 5
SERVER_ERROR_RATE = 0.2
#: the seed of the sandbox's 5xx draws: with it the first requests already meet 5xx answers,
#: two in a row among them (requests 2-3 and 20-21 of the run), so a small sync meets them
SERVER_ERROR_SEED = 2
#: tries per call for failures (5xx, time-outs): at 20% 5xx, one call fails all of them
#: with probability 0.2**10 = 1e-7
ATTEMPTS = 10


# --- the world -------------------------------------------------------------------------------


@dataclass
class World:
    stack: Stack
    crm: Sandbox
    kind: str
    org: str
    connection: str
    records: int
    billing: list[str]  # the billing side's own customers (pushed as CRM creates)

    def calls(self) -> int:
        """API requests the CRM served (OAuth token requests are not API calls: they do not
        count against the allowance)."""
        if self.kind == "hubspot":
            return self.crm.hubspot.api_calls()
        counts = self.crm.salesforce.request_counts()
        return sum(n for key, n in counts.items() if key != "oauth_token")

    def logins(self) -> int:
        """OAuth token requests (Salesforce): crmsync counts them among its calls."""
        if self.kind == "hubspot":
            return 0
        return self.crm.salesforce.request_counts().get("oauth_token", 0)

    def injected(self) -> dict[str, int]:
        """The answers the faults gave, by kind (not the portal's own 429s)."""
        side = self.crm.hubspot if self.kind == "hubspot" else self.crm.salesforce
        return {k: n for k, n in side.fault_counts().items() if k != "limit"}

    def own_limits(self) -> int:
        """429s of the CRM's own limits (HubSpot's burst and search limits): traffic the
        bound allows one call each, like an injected 429."""
        return self.crm.hubspot.fault_counts().get("limit", 0) if self.kind == "hubspot" else 0

    def set_faults(self, **faults: Any) -> None:
        side = self.crm.hubspot if self.kind == "hubspot" else self.crm.salesforce
        side.set_faults(**faults)

    def clear_faults(self) -> None:
        side = self.crm.hubspot if self.kind == "hubspot" else self.crm.salesforce
        side.clear_faults()

    def reset_counts(self) -> None:
        side = self.crm.hubspot if self.kind == "hubspot" else self.crm.salesforce
        side.reset_counts()

    def cli(self, *args: str) -> Result:
        """``crmsync ARGS --org ORG``, in-process (a process of its own costs seconds of
        imports on a busy machine), on the stack's store and Redis."""
        return CliRunner().invoke(app, [*args, "--org", self.org])


def connection_settings(kind: str, crm: Sandbox, **overrides: Any) -> dict[str, Any]:
    common = {"backoff_base_seconds": 0.01, "max_attempts": ATTEMPTS}
    if kind == "hubspot":
        settings = {**common, "host": crm.hubspot_url, "rate_limit_wait_seconds": 0.05}
    else:
        settings = {
            **common,
            "instance_url": crm.salesforce_url,
            "ca_bundle": str(crm.ca_file),
            "organization_id": crm.salesforce.organization_id,
            "limit_wait_seconds": 0.05,
        }
    return {**settings, **overrides}


def build_world(
    stack: Stack, crm: Sandbox, kind: str, size: dict[str, int], **settings: Any
) -> World:
    """An empty store and CRM; then ``records`` CRM companies and ``billing`` customers of
    the billing side's own, and the connection between them."""
    _truncate_all(stack.engine)
    crm.hubspot.reset()
    crm.salesforce.reset()
    if kind == "hubspot":
        crm.hubspot.seed_companies(size["records"])
    else:
        crm.salesforce.seed(size["records"])
        crm.salesforce.set_faults(query_batch_size=SALESFORCE_PAGE)
    with transaction(stack.engine) as session:
        org = organisations.create_organisation(session, f"Faults {kind}").id
        billing = [
            str(
                create_customer(
                    session,
                    org,
                    CustomerIn(
                        customer_name=f"Billing Side {n}",
                        email=f"billing{n}@faults.example",
                        address=Address(
                            line1=f"{n} Fault Street",
                            city="Leeds",
                            zipCode="LS1 4AP",
                            country="United Kingdom",
                            country_code="GB",
                        ),
                    ),
                ).id
            )
            for n in range(size["billing"])
        ]
        if kind == "hubspot":
            credentials: dict[str, Any] = {
                "access_token": "token-faults",
                "client_secret": HUBSPOT_SECRET,
            }
            field_map: dict[str, str] = {}
        else:
            credentials = {
                "client_id": crm.salesforce.client_id,
                "client_secret": crm.salesforce.client_secret,
            }
            field_map = {"email": "Billing_Email__c"}
        connection = add_connection(
            session,
            stack.settings,
            org,
            ConnectionSpec(
                name="crm",
                kind=kind,
                credentials=credentials,
                settings=connection_settings(kind, crm, **settings),
                field_map=field_map,
                schedule_seconds=3600,
                push_creates=True,  # the billing customers exist already: create them
            ),
        ).id
    world = World(stack, crm, kind, org, connection, size["records"], billing)
    world.reset_counts()  # setting up the connection checked it with a call or two
    return world


def sync(world: World) -> RunResult:
    outcome = work.run_sync(world.stack.settings, world.stack.engine, world.connection)
    assert isinstance(outcome, RunResult), f"the sync was not run: {outcome}"
    return outcome


#: the fault-free call count per (CRM, size): the minimum a sync of that world makes
_MINIMUM: dict[tuple[str, int, int], int] = {}


def minimum_calls(stack: Stack, crm: Sandbox, kind: str, size: dict[str, int]) -> int:
    key = (kind, size["records"], size["billing"])
    if key not in _MINIMUM:
        world = build_world(stack, crm, kind, size)
        result = sync(world)
        assert result.status == "succeeded", result.error
        _MINIMUM[key] = world.calls() - world.own_limits()
        assert_nothing_lost(world)
    return _MINIMUM[key]


# --- what must hold afterwards ---------------------------------------------------------------


@dataclass
class Verdict:
    crm_records: int = 0
    customers: int = 0
    links: int = 0
    mismatches: list[str] = field(default_factory=list)
    unlinked_crm_records: list[str] = field(default_factory=list)
    unlinked_customers: list[str] = field(default_factory=list)
    duplicates: int = 0
    open_conflicts: int = 0


def crm_side(world: World) -> tuple[Connector, dict[str, Any]]:
    """Every live CRM record, read fault-free through the connector."""
    with transaction(world.stack.engine) as session:
        row = repo.get_connection(session, world.connection)
        assert row is not None
        connector = open_connector(world.stack.settings, row)
    records = {
        r.id: r
        for page in connector.pull_customers(None, full=True)
        for r in page.records
        if not r.deleted
    }
    return connector, records


def verify(world: World) -> Verdict:
    connector, records = crm_side(world)
    verdict = Verdict(crm_records=len(records))
    with transaction(world.stack.engine) as session:
        customers = {
            c.id: c
            for c in session.scalars(
                select(CustomerRow).where(CustomerRow.organisation_id == world.org)
            )
        }
        links = list(
            session.scalars(
                select(LinkRow).where(
                    LinkRow.connection_id == world.connection, LinkRow.state == "active"
                )
            )
        )
        verdict.open_conflicts = len(
            list(
                session.scalars(
                    select(Conflict.id).where(
                        Conflict.connection_id == world.connection, Conflict.status == "open"
                    )
                )
            )
        )
    verdict.customers, verdict.links = len(customers), len(links)
    per_customer = Counter(link.customer_id for link in links)
    per_record = Counter(link.crm_id for link in links)
    per_billing_id = Counter(r.billing_id for r in records.values() if r.billing_id)
    external = Counter(c.external_id for c in customers.values() if c.external_id)
    verdict.duplicates = sum(
        n - 1
        for counts in (per_customer, per_record, per_billing_id, external)
        for n in counts.values()
        if n > 1
    )
    verdict.unlinked_crm_records = sorted(set(records) - set(per_record))
    verdict.unlinked_customers = sorted(set(customers) - set(per_customer))
    for link in links:
        record = records.get(link.crm_id)
        if record is None:
            verdict.mismatches.append(f"link {link.id}: CRM record {link.crm_id} is gone")
            continue
        billing = flatten(to_public(customers[link.customer_id]))
        for name in connector.mapped_fields:
            if canonical(billing.get(name)) != canonical(record.fields.get(name)):
                verdict.mismatches.append(
                    f"{link.crm_id} {name}: billing {billing.get(name)!r} "
                    f"CRM {record.fields.get(name)!r}"
                )
    return verdict


def assert_nothing_lost(world: World) -> Verdict:
    verdict = verify(world)
    expected = world.records + len(world.billing)
    assert verdict.mismatches == [], verdict.mismatches[:20]
    assert verdict.unlinked_crm_records == [], verdict.unlinked_crm_records[:20]
    assert verdict.unlinked_customers == [], verdict.unlinked_customers[:20]
    assert verdict.duplicates == 0
    assert verdict.open_conflicts == 0
    assert (verdict.crm_records, verdict.customers, verdict.links) == (expected,) * 3
    return verdict


def failures_listed(world: World) -> list[dict[str, Any]]:
    """``crmsync failures list --json``, run as an operator would."""
    listed = world.cli("failures", "list", "--json", "--limit", "10000")
    assert listed.exit_code == 0, listed.output
    return list(json.loads(listed.stdout))


# --- the faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A fault to inject: its sandbox settings, the connection settings it needs, and the
    calls it allows above the minimum (a function of the minimum and the size)."""

    name: str
    kind: str
    faults: Callable[[dict[str, int]], dict[str, Any]]
    allowed: Callable[[int, dict[str, int]], int]
    settings: dict[str, Any] = field(default_factory=dict)


def _server_error_allowance(minimum: int, rate: float) -> int:
    # retries are the 5xx answers: a negative binomial count with mean m*p/(1-p) and
    # variance m*p/(1-p)^2 (m calls that must succeed, p the 5xx rate)
    mean = minimum * rate / (1 - rate)
    spread = math.sqrt(minimum * rate / (1 - rate) ** 2)
    return math.ceil(mean + 5 * spread)


def _expiry_allowance(minimum: int, every: int) -> int:
    # calls <= minimum + 2 * calls / every  =>  calls <= minimum * every / (every - 2)
    return math.ceil(minimum * every / (every - 2)) - minimum


FAULTS = [
    Fault(
        "429 storm without Retry-After",
        "hubspot",
        lambda size: {"rate_limit_next": size["storm"], "rate_limit_policy": "SECONDLY"},
        lambda minimum, size: size["storm"],
    ),
    Fault(
        "429 storm with Retry-After: 1",
        "hubspot",
        lambda size: {"rate_limit_next": size["storm_retry_after"], "retry_after": 1},
        lambda minimum, size: size["storm_retry_after"],
    ),
    Fault(
        "REQUEST_LIMIT_EXCEEDED storm (no Retry-After in Salesforce)",
        "salesforce",
        lambda size: {"limit_exceeded_next": size["storm"]},
        lambda minimum, size: size["storm"],
    ),
    Fault(
        "20% of answers 5xx",
        "hubspot",
        lambda size: {
            "server_error_rate": SERVER_ERROR_RATE,
            "server_error_seed": SERVER_ERROR_SEED,
            "server_error_status": 502,
        },
        lambda minimum, size: _server_error_allowance(minimum, SERVER_ERROR_RATE),
    ),
    Fault(
        "20% of answers 5xx",
        "salesforce",
        lambda size: {
            "server_error_rate": SERVER_ERROR_RATE,
            "server_error_seed": SERVER_ERROR_SEED,
        },
        lambda minimum, size: _server_error_allowance(minimum, SERVER_ERROR_RATE),
    ),
    Fault(
        "hangs past the time-out",
        "hubspot",
        lambda size: {"hang_next": size["hangs"], "hang_seconds": HANG_SECONDS},
        lambda minimum, size: size["hangs"],
        {"request_timeout": HANG_TIMEOUT_SECONDS},
    ),
    Fault(
        "hangs past the time-out",
        "salesforce",
        lambda size: {"hang_next": size["hangs"], "hang_seconds": HANG_SECONDS},
        lambda minimum, size: size["hangs"],
        {"request_timeout": HANG_TIMEOUT_SECONDS},
    ),
    Fault(
        f"session expires every {EXPIRE_EVERY} requests (INVALID_SESSION_ID)",
        "salesforce",
        lambda size: {"expire_tokens_every": EXPIRE_EVERY},
        lambda minimum, size: _expiry_allowance(minimum, EXPIRE_EVERY),
    ),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f.kind}-{f.name}")
def test_a_sync_through_transient_faults_completes_within_its_call_bound(
    stack: Stack, crm: Sandbox, figures: Figures, fault: Fault, size: dict[str, int]
) -> None:
    minimum = minimum_calls(stack, crm, fault.kind, size)
    bound = minimum + fault.allowed(minimum, size)
    world = build_world(stack, crm, fault.kind, size, **fault.settings)
    world.set_faults(**fault.faults(size))

    result = sync(world)

    calls, injected, own_limits = world.calls(), world.injected(), world.own_limits()
    logins = world.logins()
    bound += own_limits
    world.clear_faults()
    failures = failures_listed(world)
    figures.report(
        crm=fault.kind,
        fault=fault.name,
        records=size["records"] + size["billing"],
        status=result.status,
        calls=calls,
        bound=bound,
        minimum=minimum,
        injected=injected,
        crm_own_429s=own_limits,
        logins=logins,
        calls_counted_by_crmsync=result.api_calls,
        failures_listed=len(failures),
    )
    assert result.status == "succeeded", result.error
    assert sum(injected.values()) > 0, "the fault was injected"
    assert calls <= bound, f"{calls} calls, over the bound of {bound} (minimum {minimum})"
    # every call past the minimum met a fault's answer (or a 429 of the CRM's own): nothing
    # that succeeded was asked twice
    answered_by_faults = sum(n for kind, n in injected.items() if kind != "session_expired")
    assert calls - answered_by_faults - own_limits <= minimum
    assert result.api_calls == calls + logins, "crmsync counts every request the CRM served"
    assert failures == []
    verdict = assert_nothing_lost(world)
    figures.report(records_lost=len(verdict.mismatches), duplicates=verdict.duplicates)


@pytest.mark.parametrize("size", SIZES)
def test_an_expired_hubspot_token_stops_the_run_at_once_is_listed_and_retry_recovers(
    stack: Stack, crm: Sandbox, figures: Figures, size: dict[str, int]
) -> None:
    world = build_world(stack, crm, "hubspot", size)
    world.set_faults(expired_token=True)

    failed = sync(world)

    calls, injected = world.calls(), world.injected()
    runs = world.cli("runs", "list", "--json")
    assert runs.exit_code == 0, runs.output
    (shown,) = json.loads(runs.stdout)
    # a private-app token cannot be refreshed: one call, no retries, and the operator sees
    # why in the run's record
    assert failed.status == "failed"
    assert shown["status"] == "failed" and "HubSpot 401" in shown["error"], shown
    assert "EXPIRED_AUTHENTICATION" in shown["error"]
    assert calls <= 1
    # and in the dead letter: the connection's failure (no record failed on its own)
    listed = connection_failure_listed(world, failed, "auth")
    assert "EXPIRED_AUTHENTICATION" in listed["error_message"]

    world.clear_faults()  # the token works again (renewed)
    outcome = recovered_by_retry(world)
    verdict = assert_nothing_lost(world)
    figures.report(
        crm="hubspot",
        fault="expired token (401)",
        calls_of_failed_run=calls,
        bound=1,
        injected=injected,
        failed_run_error=shown["error"][:120],
        listed=f"{listed['error_kind']} {listed['error_code']}",
        retried=outcome["retried"],
        recovered=outcome["recovered"],
        records_lost=len(verdict.mismatches),
        duplicates=verdict.duplicates,
    )


# --- faults that outlast the run ---------------------------------------------------------------


def connection_failure_listed(world: World, failed: RunResult, kind: str) -> dict[str, Any]:
    """The one failure ``crmsync failures list`` shows after a run that failed as a whole:
    the connection's, naming that run, with the CRM's words."""
    listed = failures_listed(world)
    assert len(listed) == 1, listed
    (failure,) = listed
    assert failure["level"] == "connection" and failure["connection_id"] == world.connection
    assert (failure["crm_id"], failure["customer_id"]) == (None, None)
    assert failure["run_id"] == failed.run_id and failure["status"] == "open"
    assert failure["error_kind"] == kind, failure
    # the run's reason, without the error class that the failure's code names
    assert failed.error is not None and failed.error.endswith(failure["error_message"])
    return failure


def recovered_by_retry(world: World) -> dict[str, Any]:
    """``crmsync retry --all``, once the fault is gone: the connection's failure is
    recovered (its sync runs again and succeeds), and nothing is left open."""
    retried = world.cli("retry", "--all", "--json")
    assert retried.exit_code == 0, retried.output
    outcome: dict[str, Any] = json.loads(retried.stdout)
    assert (outcome["retried"], outcome["recovered"], outcome["still_failing"]) == (1, 1, 0)
    assert [r["status"] for r in outcome["runs"]] == ["succeeded"]
    assert failures_listed(world) == []
    return outcome


#: far more faulty answers than any run tries: the fault lasts until it is cleared
LASTING = 1_000_000
#: a run's rate-limit time budget in these cases, and the wait after a 429 without
#: Retry-After: a storm that outlasts the budget fails the run after budget / wait + 1 calls
LASTING_BUDGET_SECONDS = 0.2
LASTING_LIMIT_WAIT = 0.05
#: tries per call when every answer fails, and when every answer hangs past the time-out
LASTING_ATTEMPTS = 3
HANG_ATTEMPTS = 2
LASTING_TIMEOUT_SECONDS = 0.3
LASTING_HANG_SECONDS = 1.0
#: a world small enough that these cases add only seconds to the suite (their retry is
#: a whole first sync)
TINY = {"records": 20, "billing": 3}


@dataclass(frozen=True)
class Outlasting:
    """A fault that outlasts every try the run makes, so the run fails as a whole: how to
    start it and end it, the connection settings it needs, the failure's kind in the dead
    letter, and the calls the failed run may make (its stated bound)."""

    name: str
    kind: str
    start: Callable[[World], None]
    end: Callable[[World], None]
    settings: dict[str, Any]
    error_kind: str
    bound: int
    #: only in the slow run (the same fault on the other CRM is in the default one)
    slow: bool = False


def _faults(**faults: Any) -> Callable[[World], None]:
    return lambda world: world.set_faults(**faults)


def _clear(world: World) -> None:
    world.clear_faults()
    if world.kind == "salesforce":  # the world's page size is not a fault to clear
        world.set_faults(query_batch_size=SALESFORCE_PAGE)


#: the connected app's secret while it is rotated away (the connection holds this one)
_ROTATED: dict[str, str] = {}


def _revoke_salesforce_app(world: World) -> None:
    """Sessions expire and the connected app's secret is rotated: logging in again is
    refused (invalid_client), so the token cannot be refreshed."""
    _ROTATED["secret"] = world.crm.salesforce.client_secret
    world.crm.salesforce.client_secret = "rotated-by-an-admin"
    world.crm.salesforce.expire_tokens()


def _restore_salesforce_app(world: World) -> None:
    """The admin puts the connection's secret back."""
    world.crm.salesforce.client_secret = _ROTATED.pop("secret")


_STORM_CALLS = int(LASTING_BUDGET_SECONDS / LASTING_LIMIT_WAIT) + 1
_BUDGET = {"rate_limit_budget_seconds": LASTING_BUDGET_SECONDS}

OUTLASTING = [
    Outlasting(
        "429 storm past the run's rate-limit budget (no Retry-After)",
        "hubspot",
        _faults(rate_limit_next=LASTING, rate_limit_policy="SECONDLY"),
        _clear,
        {**_BUDGET, "rate_limit_wait_seconds": LASTING_LIMIT_WAIT},
        "rate_limit",
        _STORM_CALLS,
        slow=True,
    ),
    Outlasting(
        "429 storm with a Retry-After longer than the run's budget",
        "hubspot",
        _faults(rate_limit_next=LASTING, retry_after=1),
        _clear,
        _BUDGET,
        "rate_limit",
        1,
    ),
    Outlasting(
        "REQUEST_LIMIT_EXCEEDED storm past the run's rate-limit budget",
        "salesforce",
        _faults(limit_exceeded_next=LASTING),
        _clear,
        {**_BUDGET, "limit_wait_seconds": LASTING_LIMIT_WAIT},
        "rate_limit",
        _STORM_CALLS,
    ),
    Outlasting(
        "5xx on every answer",
        "hubspot",
        _faults(server_error_next=LASTING, server_error_status=502),
        _clear,
        {"max_attempts": LASTING_ATTEMPTS},
        "unavailable",
        LASTING_ATTEMPTS,
        slow=True,
    ),
    Outlasting(
        "5xx on every answer",
        "salesforce",
        _faults(server_errors_next=LASTING),
        _clear,
        {"max_attempts": LASTING_ATTEMPTS},
        "unavailable",
        LASTING_ATTEMPTS,
    ),
    Outlasting(
        "every answer hangs past the time-out",
        "hubspot",
        _faults(hang_next=LASTING, hang_seconds=LASTING_HANG_SECONDS),
        _clear,
        {"max_attempts": HANG_ATTEMPTS, "request_timeout": LASTING_TIMEOUT_SECONDS},
        "unavailable",
        HANG_ATTEMPTS,
        slow=True,
    ),
    Outlasting(
        "every answer hangs past the time-out",
        "salesforce",
        _faults(hang_next=LASTING, hang_seconds=LASTING_HANG_SECONDS),
        _clear,
        {"max_attempts": HANG_ATTEMPTS, "request_timeout": LASTING_TIMEOUT_SECONDS},
        "unavailable",
        HANG_ATTEMPTS,
    ),
    Outlasting(
        "session expired and logging in again refused (invalid_client)",
        "salesforce",
        _revoke_salesforce_app,
        _restore_salesforce_app,
        {},
        "auth",
        1,
    ),
]


def _outlasting_cases() -> list[Any]:
    """Each fault on a tiny world (the slow-marked ones only in the slow run), and each on
    the full world in the slow run."""
    cases = []
    for size, size_id in ((TINY, "small"), (FULL, "full")):
        for fault in OUTLASTING:
            slow = fault.slow or size is FULL
            cases.append(
                pytest.param(
                    fault,
                    size,
                    id=f"{fault.kind}-{fault.name}-{size_id}",
                    marks=[pytest.mark.slow] if slow else [],
                )
            )
    return cases


@pytest.mark.parametrize(("fault", "size"), _outlasting_cases())
def test_a_fault_that_outlasts_the_run_is_listed_and_recovered_by_retry(
    stack: Stack, crm: Sandbox, figures: Figures, fault: Outlasting, size: dict[str, int]
) -> None:
    minimum = minimum_calls(stack, crm, fault.kind, size)
    world = build_world(stack, crm, fault.kind, size, **fault.settings)
    fault.start(world)
    try:
        failed = sync(world)
        calls, injected = world.calls(), world.injected()
    finally:
        fault.end(world)
    listed = connection_failure_listed(world, failed, fault.error_kind)
    world.reset_counts()

    outcome = recovered_by_retry(world)

    retry_calls, own_limits = world.calls(), world.own_limits()
    verdict = assert_nothing_lost(world)
    figures.report(
        crm=fault.kind,
        fault=fault.name,
        records=size["records"] + size["billing"],
        status=failed.status,
        calls_of_failed_run=calls,
        bound=fault.bound,
        injected=injected,
        listed=f"{listed['level']} {listed['error_kind']} {listed['error_code']}",
        retried=outcome["retried"],
        recovered=outcome["recovered"],
        retry_calls=retry_calls,
        retry_bound=minimum + own_limits,
        records_lost=len(verdict.mismatches),
        duplicates=verdict.duplicates,
    )
    assert failed.status == "failed"
    assert calls <= fault.bound, f"{calls} calls by the failed run, over {fault.bound}"
    # the failed run committed nothing: its retry is the first sync, no more
    assert retry_calls <= minimum + own_limits, f"{retry_calls} calls, minimum {minimum}"


# --- partial batch failures --------------------------------------------------------------------


@dataclass(frozen=True)
class Refusals:
    """Per-record refusals for a CRM: keyed by the billing id (the record's external id),
    some until the fault is gone, some (Salesforce row locks) only once."""

    kind: str
    lasting: Callable[[str], Any]
    once: Callable[[str], Any] | None
    listed_kind: str


REFUSALS = [
    Refusals("hubspot", lambda key: "validation", None, "validation"),
    Refusals(
        "salesforce",
        lambda key: {"code": "FIELD_CUSTOM_VALIDATION_EXCEPTION"},
        lambda key: {"code": "UNABLE_TO_LOCK_ROW", "times": 1},
        "validation",
    ),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("refusals", REFUSALS, ids=lambda r: r.kind)
def test_records_refused_in_a_batch_are_listed_and_recovered_by_retry(
    stack: Stack, crm: Sandbox, figures: Figures, refusals: Refusals, size: dict[str, int]
) -> None:
    minimum = minimum_calls(stack, crm, refusals.kind, size)
    world = build_world(stack, crm, refusals.kind, size)
    refused = world.billing[::8]  # one in eight
    locked = [c for c in world.billing if c not in refused][:3] if refusals.once else []
    errors = {key: refusals.lasting(key) for key in refused}
    if refusals.once is not None:
        errors.update({key: refusals.once(key) for key in locked})
    world.set_faults(record_errors=errors)

    result = sync(world)

    calls = world.calls()
    # a locked row is tried again in its batch's retry: one more collection call per batch
    push_batches = math.ceil(len(world.billing) / 200)
    bound = minimum + (push_batches if locked else 0) + world.own_limits()
    listed = failures_listed(world)
    figures.report(
        crm=refusals.kind,
        fault="partial batch failures",
        records=size["records"] + size["billing"],
        refused=len(refused),
        locked_once=len(locked),
        status=result.status,
        calls=calls,
        bound=bound,
        minimum=minimum,
        failures_listed=len(listed),
    )
    assert result.status == "succeeded", result.error
    assert calls <= bound, f"{calls} calls, over the bound of {bound} (minimum {minimum})"
    assert {f["customer_id"] for f in listed} == set(refused), "each refusal, and only those"
    assert {f["error_kind"] for f in listed} == {refusals.listed_kind}
    assert all(f["direction"] == "push" and f["error_message"] for f in listed)
    verdict = verify(world)
    assert sorted(verdict.unlinked_customers) == sorted(refused), "the rest synced"
    assert verdict.mismatches == [] and verdict.duplicates == 0

    world.clear_faults()
    retried = world.cli("retry", "--all", "--json")
    assert retried.exit_code == 0, retried.output
    outcome = json.loads(retried.stdout)
    assert (outcome["retried"], outcome["recovered"], outcome["still_failing"]) == (
        len(refused),
        len(refused),
        0,
    )
    assert failures_listed(world) == []
    verdict = assert_nothing_lost(world)
    figures.report(
        retried=outcome["retried"],
        recovered=outcome["recovered"],
        records_lost=len(verdict.mismatches),
        duplicates=verdict.duplicates,
    )
