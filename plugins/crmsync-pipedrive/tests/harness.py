"""The Pipedrive side of crmsync's contract kit: drives the emulator as a Pipedrive user
would and builds connectors pointed at it (see ``connectors.testing.Harness``)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Literal

from crmsync_pipedrive import PipedriveConnector, mapping
from crmsync_pipedrive.emulator import (
    CRMSYNC_ID_KEY,
    EMAIL_KEY,
    PHONE_KEY,
    PipedriveEmulator,
)

from connectors.base import ConnectionConfig, CustomerFields, RateGate, WebhookRequest
from connectors.testing import InjectedFault, WebhookReceiver

WEBHOOK_USER = "crmsync"
#: the emulator's 429s say the burst window resets this soon (real ones: 1-2 s)
FAST_RESET_SECONDS = 0.02
WEBHOOK_PASSWORD = "emulator-webhook-password"
#: organizations have no phone or e-mail: the emulated company has custom fields for them
FIELD_MAP: dict[str, str | None] = {"phone_number": PHONE_KEY, "email": EMAIL_KEY}


class PipedriveHarness:
    key = "pipedrive"
    pull_page_max = 500
    incremental_page_max = 500
    #: v2 writes one organization per request
    push_batch_max = 1
    missing_id = "987654321"
    sends_retry_after = True  # a 429 may carry Retry-After (else x-ratelimit-reset)
    can_refresh_tokens = False  # API tokens do not expire and cannot be refreshed
    #: Pipedrive has no unique fields: a duplicate is not something it can refuse
    rejectable: tuple[str, ...] = ("validation",)

    def __init__(self, emulator: PipedriveEmulator) -> None:
        self.emulator = emulator
        self.field_map: dict[str, str | None] = dict(FIELD_MAP)
        self.fmap = mapping.field_map(self.field_map)

    # -- connectors
    def settings(self, **overrides: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "company_url": self.emulator.url,
            "external_id_key": CRMSYNC_ID_KEY,
            "request_timeout": 5.0,
            "max_attempts": 5,
            "backoff_base_seconds": 0.001,
            "clock_skew_seconds": 0,
        }
        settings.update(overrides)
        return settings

    def credentials(self, **overrides: str) -> dict[str, str]:
        creds = {
            "api_token": self.emulator.api_token,
            "webhook_user": WEBHOOK_USER,
            "webhook_password": WEBHOOK_PASSWORD,
        }
        creds.update(overrides)
        return {k: v for k, v in creds.items() if v}

    def static_credentials(self) -> dict[str, str]:
        return self.credentials()

    def connector(self, **settings: Any) -> PipedriveConnector:
        field_map = settings.pop("field_map", self.field_map)
        credentials = settings.pop("credentials", None)
        gate: RateGate | None = settings.pop("gate", None)
        return PipedriveConnector(
            ConnectionConfig(
                "pipedrive-test",
                credentials if credentials is not None else self.credentials(),
                self.settings(**settings),
                field_map,
            ),
            gate=gate,
        )

    def push_calls(self, updates: int, creates: int) -> int:
        """One PATCH per update; an exact search and a POST per create."""
        return updates + 2 * creates

    # -- the company, as a user
    def reset(self) -> None:
        self.emulator.reset()
        self.emulator.set_faults(burst_limit=10_000, reset_seconds=FAST_RESET_SECONDS)

    def seed(self, count: int) -> list[str]:
        return self.emulator.seed(count)

    def _split(self, fields: CustomerFields) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        body = mapping.to_body(dict(fields), self.fmap)
        return body.get("name"), body.get("address") or {}, body.get("custom_fields") or {}

    def create(self, fields: CustomerFields) -> str:
        name, address, custom = self._split(fields)
        return self.emulator.create(str(name), address, custom)

    def edit(self, crm_id: str, fields: CustomerFields) -> None:
        body = mapping.to_body(dict(fields), self.fmap)
        address = {
            self.fmap[k].removeprefix("address."): v
            for k, v in fields.items()
            if self.fmap.get(k, "").startswith("address.")
        }
        self.emulator.edit(
            crm_id,
            name=body.get("name"),
            address=address,
            custom={k: v for k, v in (body.get("custom_fields") or {}).items()},
        )

    def read(self, crm_id: str) -> CustomerFields:
        return mapping.to_fields(self.emulator.read(crm_id).v1(), self.fmap)

    def delete(self, crm_id: str) -> None:
        self.emulator.delete(crm_id)

    def restore(self, crm_id: str) -> None:
        self.emulator.restore(crm_id)

    def merge(self, winner: str, loser: str) -> str:
        return self.emulator.merge(winner, loser)

    def set_faults(self, **faults: Any) -> None:
        self.emulator.set_faults(**faults)

    def api_calls(self) -> int:
        return self.emulator.api_calls()

    # -- knobs of the contract suite
    def change_at(self, crm_ids: Sequence[str], ms: int) -> None:
        self.emulator.touch(list(crm_ids), ms // 1000)  # Pipedrive stamps whole seconds

    def rate_limit(self, times: int, retry_after: float | None = None) -> InjectedFault:
        self.emulator.set_faults(rate_limit_next=times, retry_after=retry_after)
        # without Retry-After the connector waits the window's x-ratelimit-reset
        wait = retry_after if retry_after is not None else FAST_RESET_SECONDS
        return InjectedFault("Request over limit", wait)

    def spend_allowance(self, after: int) -> InjectedFault:
        self.emulator.set_faults(daily_left=after)
        return InjectedFault("Daily request limit exceeded")

    def restore_allowance(self) -> None:
        self.emulator.set_faults(daily_left=None)

    def server_errors(self, times: int) -> InjectedFault:
        self.emulator.set_faults(server_error_next=times, server_error_status=500)
        return InjectedFault("Internal server error (injected)")

    def hang(self, times: int, seconds: float) -> None:
        self.emulator.set_faults(hang_next=times, hang_seconds=seconds)

    def reject_record(self, key: str, kind: Literal["validation", "duplicate"]) -> InjectedFault:
        if kind not in self.rejectable:
            raise ValueError(f"Pipedrive cannot refuse a record as {kind}")
        errors = dict(self.emulator.faults.record_errors)
        errors[key] = kind
        self.emulator.set_faults(record_errors=errors)
        return InjectedFault("Address is not valid (injected)")

    def expire_tokens(self) -> InjectedFault:
        self.emulator.set_faults(expired_token=True)
        return InjectedFault("unauthorized access")

    def webhook_requests(self, change: Callable[[], object]) -> list[WebhookRequest]:
        """Deliveries of a v1 webhook created with basic auth, answered 200."""
        with WebhookReceiver("/hooks/pipedrive/contract", status=200) as receiver:
            hook = self.emulator.add_webhook(
                receiver.url, "*", "organization", WEBHOOK_USER, WEBHOOK_PASSWORD
            )
            try:
                change()
                if not self.emulator.flush_webhooks(10):
                    raise TimeoutError("the emulator did not deliver its webhooks")
            finally:
                self.emulator.store.webhooks.pop(hook.id, None)
            return list(receiver.requests)

    def tampered_webhooks(self, request: WebhookRequest) -> list[WebhookRequest]:
        """A wrong password, another user, a broken header."""

        def basic(user: str, password: str) -> dict[str, str]:
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {**_without_auth(request.headers), "Authorization": f"Basic {pair}"}

        return [
            WebhookRequest("POST", request.url, basic(WEBHOOK_USER, "guess"), request.body),
            WebhookRequest("POST", request.url, basic("someone", WEBHOOK_PASSWORD), request.body),
            WebhookRequest(
                "POST",
                request.url,
                {**_without_auth(request.headers), "Authorization": "Basic !!!"},
                request.body,
            ),
        ]


def _without_auth(headers: Any) -> dict[str, str]:
    return {k: v for k, v in dict(headers).items() if k.lower() != "authorization"}


__all__ = ["PipedriveHarness"]
