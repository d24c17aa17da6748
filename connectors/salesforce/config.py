"""What a Salesforce connection takes: its settings and credentials, as pydantic models.

``crmsync connections add salesforce`` and the console build their options and forms from
these, and check what the operator gives with them (see ``connectors.base``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.base import ConnectorCredentials, ConnectorSettings

#: an Organization's Id: key prefix 00D, 15 characters (18 with the case-safe suffix)
ORG_ID = re.compile(r"00D[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?")


class SalesforceSettings(ConnectorSettings):
    """A Salesforce connection: Accounts <-> customers, Contacts <-> contacts."""

    contacts: bool = Field(
        True,
        strict=True,
        description="Sync the CRM's contacts into the customers' contacts (false: Accounts only).",
    )
    contact_communications_field: str | None = Field(
        None,
        description="Contact field (a multi-select picklist) holding which communications a "
        "contact gets: billing, updates, legal (default: not synced).",
    )

    instance_url: str = Field(description="https://yourorg.my.salesforce.com")
    organization_id: str | None = Field(
        None, description="The org id Outbound Messages must name (00D...)."
    )
    external_id_field: str = Field(
        "crmsync_id__c", description="Account External ID field holding the billing id."
    )
    ca_bundle: str | None = Field(None, description="A CA certificate file to trust for the CRM.")
    token_url: str | None = Field(
        None, description="OAuth token endpoint (default: instance URL + /services/oauth2/token)."
    )
    api_version: str = Field("59.0", description="REST API version (46.0 or later).")
    request_timeout: float = Field(60.0, gt=0, description="Seconds per HTTP request.")
    max_attempts: int = Field(5, ge=1, description="Tries per call for retriable errors.")
    backoff_base_seconds: float = Field(0.5, ge=0, description="Exponential back-off base.")
    limit_wait_seconds: float = Field(
        1.0, ge=0, description="How long everyone waits after a concurrent-request limit."
    )
    daily_limit_recheck_seconds: float = Field(
        1800.0, ge=0, description="When a spent rolling 24-hour allowance is checked again."
    )
    rate_limit_budget_seconds: float = Field(
        3600.0, gt=0, description="A run's time budget for rate-limit waits."
    )
    lock_retries: int = Field(3, ge=0, description="Extra tries for UNABLE_TO_LOCK_ROW records.")
    overlap_seconds: float = Field(
        0.0, ge=0, description="Incremental pulls re-read this window before the watermark."
    )

    @field_validator("organization_id")
    @classmethod
    def _is_an_org_id(cls, value: str | None) -> str | None:
        # an org's Id is a Salesforce Id (15 characters, or 18 with the case-safe suffix) of
        # the Organization object, whose key prefix is 00D: Setup > Company Information
        if value is not None and not ORG_ID.fullmatch(value.strip()):
            raise ValueError(
                f"not a Salesforce org id: {value!r} (00D and 12 more letters or digits, or "
                "15 more: Setup > Company Information > Salesforce.com Organization ID)"
            )
        return value.strip() if value is not None else None

    @field_validator("instance_url", "token_url")
    @classmethod
    def _is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not (
            urlsplit(value).scheme in ("http", "https") and urlsplit(value).hostname
        ):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value


class SalesforceCredentials(ConnectorCredentials):
    client_id: str | None = Field(None, description="OAuth client id (connected app).")
    client_secret: SecretStr | None = Field(
        None, description="OAuth client secret (prompted, hidden, when no credential is given)."
    )
    access_token: SecretStr | None = Field(None, description="Access token.")
    refresh_token: SecretStr | None = Field(None, description="Refresh token.")
    webhook_secret: SecretStr | None = Field(
        None, description="Secret Outbound Messages carry (?secret= or X-Crmsync-Secret)."
    )

    @classmethod
    def to_prompt(cls, given: Mapping[str, object]) -> list[str]:
        """The client secret, when no way to get a token was given."""
        if any(given.get(k) for k in ("access_token", "refresh_token", "client_secret")):
            return []
        return ["client_secret"]

    @model_validator(mode="after")
    def _a_way_to_a_token(self) -> Self:
        if not (self.access_token or self.refresh_token or self.client_secret):
            raise ValueError("give a client secret, an access token or a refresh token")
        if self.client_secret and not self.client_id:
            raise ValueError("--client-id is needed with a client secret")
        return self
