"""HubSpot's API limits, enforced as the usage guidelines document them.

https://developers.hubspot.com/docs/api/usage-details and the changelog
https://developers.hubspot.com/changelog/increasing-our-api-limits (private apps on an
Enterprise account):

- **burst**: 190 requests per rolling 10 seconds (``TEN_SECONDLY_ROLLING``); every answer
  carries ``X-HubSpot-RateLimit-Max / -Remaining / -Interval-Milliseconds``;
- **daily**: 1,000,000 requests a day, resetting "at midnight based on your time zone
  setting" (``DAILY``), shown in ``X-HubSpot-RateLimit-Daily / -Daily-Remaining`` and at
  ``GET /account-info/v3/api-usage/daily/private-apps`` (``resetsAt``);
- **search**: a few requests per second per token (four in
  https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase, five since;
  ``SECONDLY``); search answers carry no ``X-HubSpot-RateLimit-*`` headers.

Past a limit "any app or integration exceeding its rate limits will receive a 429 error
response for all subsequent API calls", with a body ``{"status": "error", "message": "You
have reached your ... limit.", "errorType": "RATE_LIMIT", "correlationId", "policyName"}``
and usually no ``Retry-After``.

The window length (``rate_limit_interval_ms``), the daily allowance (``daily_limit``) and
the search rate (``search_per_second``) are faults, so tests can make them short; a test
starts the portal's next day with :meth:`Limits.new_day`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

BURST_MAX = 190
SECONDLY_MAX = 19  # the headers' per-second share of the burst limit
DAILY_MAX = 1_000_000
SEARCH_PER_SECOND = 5

MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}


@dataclass
class Verdict:
    """What the limits say of one request: ``policy`` None means it may proceed."""

    policy: str | None
    headers: dict[str, str]


class Limits:
    """Counts of one portal's API use, shared by every request (thread-safe)."""

    def __init__(self, time_zone: str = "UTC") -> None:
        self._lock = threading.Lock()
        self._zone = ZoneInfo(time_zone)
        self._burst: deque[float] = deque()
        self._search: deque[float] = deque()
        self._daily = 0
        self._resets_at = self._next_midnight()

    def _next_midnight(self) -> datetime:
        local = datetime.now(self._zone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
        return midnight.replace(tzinfo=self._zone).astimezone(UTC)

    def new_day(self) -> None:
        """The portal's midnight passed: the daily allowance is whole again."""
        with self._lock:
            self._daily = 0
            self._resets_at = self._next_midnight()

    def reset(self) -> None:
        with self._lock:
            self._burst.clear()
            self._search.clear()
        self.new_day()

    def used_today(self) -> int:
        """Requests counted against today's allowance."""
        with self._lock:
            self._roll_day()
            return self._daily

    def usage(self, daily_limit: int | None) -> dict[str, object]:
        """The daily usage as ``/account-info/v3/api-usage/daily/private-apps`` shows it."""
        with self._lock:
            self._roll_day()
            return {
                "name": "private-apps-api-calls-daily",
                "usageLimit": DAILY_MAX if daily_limit is None else daily_limit,
                "currentUsage": self._daily,
                "collectedAt": _iso(datetime.now(UTC)),
                "fetchStatus": "SUCCESS",
                "resetsAt": _iso(self._resets_at),
            }

    def _roll_day(self) -> None:
        if datetime.now(UTC) >= self._resets_at:
            self._daily = 0
            self._resets_at = self._next_midnight()

    def check(
        self,
        *,
        search: bool,
        interval_ms: int,
        daily_limit: int | None,
        search_per_second: float | None,
        count: bool = True,
    ) -> Verdict:
        """Count one request (unless ``count`` is false: a fault refuses it anyway) and
        decide whether a limit refuses it."""
        now = time.monotonic()
        daily_max = DAILY_MAX if daily_limit is None else daily_limit
        with self._lock:
            self._roll_day()
            window = interval_ms / 1000
            while self._burst and self._burst[0] <= now - window:
                self._burst.popleft()
            while self._search and self._search[0] <= now - 1.0:
                self._search.popleft()
            policy: str | None = None
            if self._daily >= daily_max:
                policy = "DAILY"
            elif len(self._burst) >= BURST_MAX:
                policy = "TEN_SECONDLY_ROLLING"
            elif search and search_per_second and len(self._search) >= search_per_second:
                policy = "SECONDLY"
            if count and policy != "DAILY":
                self._daily += 1
            if count and policy is None:
                self._burst.append(now)
                if search:
                    self._search.append(now)
            remaining = max(0, BURST_MAX - len(self._burst))
            last_second = sum(1 for stamp in reversed(self._burst) if stamp > now - 1.0)
            daily_left = max(0, daily_max - self._daily)
        if search:
            # "the search endpoints do not return the X-HubSpot-RateLimit-* headers"
            return Verdict(policy, {})
        headers = {
            "X-HubSpot-RateLimit-Max": str(BURST_MAX),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(interval_ms),
            "X-HubSpot-RateLimit-Secondly": str(SECONDLY_MAX),
            "X-HubSpot-RateLimit-Secondly-Remaining": str(max(0, SECONDLY_MAX - last_second)),
            "X-HubSpot-RateLimit-Daily": str(daily_max),
            "X-HubSpot-RateLimit-Daily-Remaining": str(daily_left),
        }
        return Verdict(policy, headers)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )
