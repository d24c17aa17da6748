"""What the connector contract suite needs from each connector's test harness.

Each connector's own tests provide one ``Harness`` that drives that connector's emulator as a
CRM user would (crmsync's built-in ones are in ``tests/connectors/harness_*.py``), so the
contract suite (:class:`connectors.testing.ContractSuite`) runs the same cases against every
connector. Where the CRMs differ (fault names, token expiry, how a webhook is authenticated)
the harness hides it behind a small method named for what the case wants, such as
:meth:`Harness.rate_limit`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol

from connectors.base import Connector, CustomerFields, WebhookRequest


@dataclass(frozen=True)
class InjectedFault:
    """How an injected fault will look to the connector: ``message`` is (part of) the CRM's
    own words, which the connector's error must carry; ``wait_seconds`` is the wait the CRM
    asks for (``Retry-After`` or its equivalent), if it asks for one."""

    message: str
    wait_seconds: float | None = None


class Harness(Protocol):
    key: str
    #: records per page of a full pull, and per push batch, at the CRM's maximum
    pull_page_max: int
    incremental_page_max: int
    push_batch_max: int
    #: the per-connection field map ``connector()`` uses by default
    field_map: dict[str, str | None]
    #: an id in the CRM's own format that names no record
    missing_id: str
    #: whether the CRM's rate-limit answer can carry ``Retry-After``
    sends_retry_after: bool
    #: whether a connector made by ``connector()`` can get a new token when one expires
    can_refresh_tokens: bool
    #: the per-record refusals the CRM can make: "validation", and "duplicate" where it
    #: enforces a unique field
    rejectable: tuple[str, ...]

    def push_calls(self, updates: int, creates: int) -> int:
        """The fewest API calls the CRM allows for a push of that many updates and creates
        (batches of ``push_batch_max`` per kind; more where a create needs a look-up)."""

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The connection settings ``connector()`` uses, with overrides."""

    def credentials(self, **overrides: str) -> dict[str, str]:
        """The connection credentials ``connector()`` uses, with overrides."""

    def static_credentials(self) -> dict[str, str]:
        """Credentials with a valid access token and nothing to get another with."""

    def connector(self, **settings: Any) -> Connector:
        """A fresh connector for the sandbox, with settings overrides; ``field_map=``,
        ``credentials=`` and ``gate=`` (a ``RateGate``) are taken apart from them."""

    def reset(self) -> None:
        """Empty the CRM, clear faults and request counts."""

    def seed(self, count: int) -> list[str]:
        """Create ``count`` realistic records (with contacts); their CRM ids, in order."""

    def create(self, fields: CustomerFields) -> str:
        """Create one record as a CRM user would, from customer fields; its id."""

    def edit(self, crm_id: str, fields: CustomerFields) -> None:
        """Change a record as a CRM user would (customer field names)."""

    def read(self, crm_id: str) -> CustomerFields:
        """The record as customer fields, read through the sandbox's control API."""

    def delete(self, crm_id: str) -> None: ...
    def restore(self, crm_id: str) -> None: ...
    def merge(self, winner: str, loser: str) -> str:
        """Merge ``loser`` into ``winner``; the surviving id."""

    def set_faults(self, **faults: Any) -> None:
        """Inject faults (names as the sandbox's control API takes them)."""

    def api_calls(self) -> int:
        """Requests the sandbox served on the CRM API (not the control API) since reset."""

    # -- knobs of the contract suite -----------------------------------------------------

    def change_at(self, crm_ids: Sequence[str], ms: int) -> None:
        """Touch the records (as automation does) so that each one's modification stamp is
        exactly ``ms`` (epoch milliseconds; never earlier than a stamp given before)."""

    def rate_limit(self, times: int, retry_after: float | None = None) -> InjectedFault:
        """The next ``times`` API requests are refused by the CRM's short-window rate limit
        (HubSpot ``SECONDLY``, Salesforce's concurrent requests), with
        ``Retry-After: retry_after`` when it is not None (only if ``sends_retry_after``)."""

    def spend_allowance(self, after: int) -> InjectedFault:
        """The CRM's daily allowance (HubSpot's day, Salesforce's rolling 24 hours) runs out
        after ``after`` more API calls: every call after them is refused."""

    def restore_allowance(self) -> None:
        """The allowance returns (HubSpot: the portal's midnight; Salesforce: the calls
        age out of the rolling 24 hours)."""

    def server_errors(self, times: int) -> InjectedFault:
        """The next ``times`` API requests answer a 5xx."""

    def hang(self, times: int, seconds: float) -> None:
        """The next ``times`` API requests answer only after ``seconds``."""

    def reject_record(self, key: str, kind: Literal["validation", "duplicate"]) -> InjectedFault:
        """Writes of the record known by ``key`` (its CRM id, or the billing id of a create)
        are refused per record, with a ``kind`` error; other records of the batch pass."""

    def expire_tokens(self) -> InjectedFault:
        """Every access token issued so far is refused from now on (401)."""

    def webhook_requests(self, change: Callable[[], object]) -> list[WebhookRequest]:
        """Run ``change`` (CRM-user actions) with the sandbox's own webhook delivery pointed
        at a local receiver; the requests it delivered, as received."""

    def tampered_webhooks(self, request: WebhookRequest) -> list[WebhookRequest]:
        """Forgeries of a genuine webhook request that the connector must refuse."""


class WebhookReceiver:
    """A local HTTP endpoint that records every POST and answers ``status`` with ``body``.

    ``url`` is the full URL it listens on (``path`` included); ``requests`` holds what it
    received as :class:`WebhookRequest` s, with the URL exactly as the sender called it."""

    def __init__(
        self,
        path: str = "/hooks/contract?x=1",
        status: int = 204,
        body: bytes = b"",
        content_type: str = "text/plain",
    ) -> None:
        self.requests: list[WebhookRequest] = []
        outer = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers: Mapping[str, str] = dict(self.headers.items())
                with lock:
                    outer.requests.append(
                        WebhookRequest("POST", outer.origin + self.path, headers, raw)
                    )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_port}"
        self.url = self.origin + path
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
