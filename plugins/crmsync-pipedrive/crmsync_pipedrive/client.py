"""Talking to the Pipedrive REST API over httpx (Pipedrive maintains no Python client).

Every request goes through ``connectors.calls.call_crm`` (crmsync's one place for rate
gating, classification and retries); this module turns Pipedrive's answers into crmsync's
error types, in one place:

====================  ===========================================================
429                   ``RateLimited`` (the 2-second burst window: traffic, waited
                      out) for ``Retry-After`` if sent, else ``x-ratelimit-reset``;
                      with ``x-daily-requests-left: 0``, ``DailyLimitExceeded``
                      until the next midnight UTC (the day's budget is spent)
5xx, time-outs        ``RetriableError``
401                   ``AuthError`` (API tokens cannot be refreshed)
400, 404 on a write   returned to the caller: a refusal of that one record
====================  ===========================================================

The API token is sent in the ``x-api-token`` header, never in the URL (URLs end up in logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.base import RateGate
from connectors.calls import CallCounter, RetryPolicy, call_crm
from connectors.errors import (
    AuthError,
    ConnectorError,
    DailyLimitExceeded,
    RateLimited,
    RetriableError,
)
from connectors.telemetry import CallLabels


@dataclass(frozen=True)
class Answer:
    """A Pipedrive answer: status and parsed JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and bool(self.body.get("success", True))

    @property
    def error(self) -> str:
        return str(self.body.get("error") or self.body.get("message") or f"HTTP {self.status}")


class PipedriveHttpError(Exception):
    """An answer that is not the record's own refusal (auth, limits, server errors)."""

    def __init__(self, answer: Answer, headers: Mapping[str, str]) -> None:
        super().__init__(f"Pipedrive answered {answer.status}: {answer.error}")
        self.answer = answer
        self.headers = headers


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def classify(error: Exception) -> ConnectorError | None:
    """crmsync's error for a failed request (None: not Pipedrive's doing, a bug)."""
    if isinstance(error, httpx.TimeoutException | httpx.TransportError):
        return RetriableError(f"Pipedrive did not answer: {type(error).__name__}")
    if not isinstance(error, PipedriveHttpError):
        return None
    status, message = error.answer.status, error.answer.error
    if status == 429:
        if error.headers.get("x-daily-requests-left") == "0":
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            until = today + timedelta(days=1)  # Pipedrive's day is counted in UTC
            return DailyLimitExceeded(f"Pipedrive: {message}", until=until)
        wait = _seconds(error.headers.get("retry-after"))
        if wait is None:
            wait = _seconds(error.headers.get("x-ratelimit-reset"))
        return RateLimited(
            f"Pipedrive: {message}",
            wait_seconds=wait if wait is not None else 2.0,  # the burst window
            policy="BURST",
            status=429,
        )
    if status >= 500:
        return RetriableError(f"Pipedrive: {message}", status=status)
    if status == 401:
        return AuthError(f"Pipedrive refused the API token: {message}")
    return ConnectorError(f"Pipedrive answered {status}: {message}")


class PipedriveClient:
    """One connection's HTTP client: base URL, token header, time-out, call accounting."""

    def __init__(
        self,
        company_url: str,
        api_token: str,
        *,
        timeout: float,
        gate: RateGate,
        counter: CallCounter,
        policy: RetryPolicy,
        labels: CallLabels,
    ) -> None:
        self._http = httpx.Client(
            base_url=company_url.rstrip("/") + "/api",
            headers={"x-api-token": api_token, "Accept": "application/json"},
            timeout=timeout,
            trust_env=False,
        )
        self._gate = gate
        self._counter = counter
        self._policy = policy
        #: whose calls these are, for crmsync's metrics and log lines
        self._labels = labels
        #: the day's requests left, as Pipedrive's last answer said (``x-daily-requests-left``)
        self.daily_left: int | None = None

    def close(self) -> None:
        self._http.close()

    def __del__(self) -> None:
        # crmsync's engine drops connectors without closing them: close the kept-alive
        # sockets here rather than leave them to the garbage collector
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        record_statuses: tuple[int, ...] = (),
    ) -> Answer:
        """One API call (retried as ``call_crm`` decides). Statuses in ``record_statuses``
        (a write's 400 / 404) come back as answers; other failures raise."""

        def request() -> Answer:
            response = self._http.request(method, path, params=params, json=json)
            self._gate.observe(response.headers)
            left = response.headers.get("x-daily-requests-left")
            if left is not None and left.isdigit():
                self.daily_left = int(left)
            try:
                body = response.json()
            except ValueError:
                body = {"success": False, "error": response.text[:200] or response.reason_phrase}
            answer = Answer(response.status_code, body if isinstance(body, dict) else {})
            if 200 <= answer.status < 300 or answer.status in record_statuses:
                return answer
            raise PipedriveHttpError(answer, response.headers)

        return call_crm(
            request,
            classify=classify,
            gate=self._gate,
            counter=self._counter,
            policy=self._policy,
            crm="Pipedrive",
            connection_id=self._labels.connection_id,
            organisation_id=self._labels.organisation_id,
            operation=f"{method} {_resource(path)}",
        )


def _resource(path: str) -> str:
    """A call's path without its ids or version (``/v1/organizations/12/merge`` ->
    ``organizations/merge``): the ``operation`` label stays a bounded set, and holds no
    record's id."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts and parts[0].startswith("v") and parts[0][1:].isdigit():
        parts = parts[1:]
    return "/".join(p for p in parts if not p.isdigit()) or "/"
