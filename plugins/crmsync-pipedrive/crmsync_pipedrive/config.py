"""What a Pipedrive connection takes: its settings and credentials, as pydantic models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.base import ConnectorCredentials, ConnectorSettings


class PipedriveSettings(ConnectorSettings):
    """A Pipedrive connection: Organizations <-> customers, Persons <-> contacts."""

    company_url: str = Field(
        description="Your company's Pipedrive URL, e.g. https://yourcompany.pipedrive.com."
    )
    external_id_key: str = Field(
        description="API key (40 characters) of the organization text field that holds the "
        "billing id (Settings > Data fields).",
        min_length=1,
    )
    request_timeout: float = Field(30.0, gt=0, description="Seconds per HTTP request.")
    max_attempts: int = Field(5, ge=1, description="Tries per call for retriable errors.")
    backoff_base_seconds: float = Field(0.5, ge=0, description="Exponential back-off base.")
    rate_limit_budget_seconds: float = Field(
        3600.0, gt=0, description="A run's time budget for rate-limit waits."
    )
    daily_request_limit: int = Field(
        10_000,
        gt=0,
        description="Requests a day the plan allows (Pipedrive reports only those left).",
    )
    clock_skew_seconds: float = Field(
        1.0, ge=0, description="How far our clock may be ahead of Pipedrive's (seconds)."
    )

    @field_validator("company_url")
    @classmethod
    def _is_a_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")


class PipedriveCredentials(ConnectorCredentials):
    api_token: SecretStr = Field(
        description="A Pipedrive API token (prompted, hidden, when not given)."
    )
    webhook_user: str | None = Field(
        None, description="The HTTP basic auth user the webhooks are created with."
    )
    webhook_password: SecretStr | None = Field(
        None,
        description="The HTTP basic auth password the webhooks are created with (prompted, "
        "hidden, when a webhook user is given without it).",
    )

    @classmethod
    def to_prompt(cls, given: Mapping[str, object]) -> list[str]:
        """The API token when not given; the webhook password when a webhook user is given
        without it (a connection with a user and no password refuses every delivery)."""
        missing = super().to_prompt(given)
        if given.get("webhook_user") and not given.get("webhook_password"):
            missing.append("webhook_password")
        return missing

    @model_validator(mode="after")
    def _webhook_user_and_password_together(self) -> Self:
        # Pipedrive sends both in its Authorization header, or neither
        if bool(self.webhook_user) != bool(self.webhook_password):
            raise ValueError("give --webhook-user and --webhook-password together")
        return self
