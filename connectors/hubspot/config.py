"""What a HubSpot connection takes: its settings and credentials, as pydantic models.

``crmsync connections add hubspot`` and the console build their options and forms from
these, and check what the operator gives with them (see ``connectors.base``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from connectors.base import ConnectorCredentials, ConnectorSettings

#: how long a write may take to reach HubSpot's search index, by default. HubSpot gives no
#: figure: its search guide warns that newly created or updated objects may take a few
#: moments to appear in search results (paraphrased); 10 s covers a few moments with room to
#: spare, and costs only a re-read of the records modified in the 10 s before a pull began
#: (unchanged: nothing is written), in the same search page while they are under 200
SEARCH_LAG_SECONDS = 10.0


class HubSpotSettings(ConnectorSettings):
    """A HubSpot connection: companies <-> customers, contacts <-> contacts."""

    contacts: bool = Field(
        True,
        strict=True,
        description="Sync the CRM's contacts into the customers' contacts (false: companies only).",
    )
    contact_communications_field: str | None = Field(
        None,
        description="Contact property (multiple checkboxes) holding which communications a "
        "contact gets: billing, updates, legal (default: not synced).",
    )

    host: str = Field("https://api.hubapi.com", description="The HubSpot API base URL.")
    external_id_property: str = Field(
        "crmsync_id", description="Unique company property holding the billing id."
    )
    accept_signature_v1_v2: bool = Field(
        False, description="Accept webhooks signed v1/v2 (no timestamp)."
    )
    ca_bundle: str | None = Field(None, description="A CA certificate file to trust for the CRM.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds per HTTP request.")
    max_attempts: int = Field(5, ge=1, description="Tries per call for retriable errors.")
    backoff_base_seconds: float = Field(0.5, ge=0, description="Exponential back-off base.")
    rate_limit_budget_seconds: float = Field(
        3600.0, gt=0, description="A run's time budget for rate-limit waits."
    )
    rate_limit_wait_seconds: float = Field(
        1.0, ge=0, description="The wait after a 429 that gives no Retry-After."
    )
    time_zone: str = Field(
        "UTC", description="The portal's IANA time zone (its daily API limit resets at midnight)."
    )
    search_per_second: float = Field(
        4, ge=0, description="Searches a second at most (0: no pacing)."
    )
    clock_skew_ms: int = Field(
        1000, ge=0, description="How far our clock may be ahead of HubSpot's (ms)."
    )
    search_lag_seconds: float = Field(
        SEARCH_LAG_SECONDS,
        ge=0,
        description="How long a write may take to reach HubSpot's search index: an "
        "incremental pull reads again the records modified this long before it began "
        "(0: none).",
    )

    @field_validator("host")
    @classmethod
    def _is_a_url(cls, value: str) -> str:
        if not (urlsplit(value).scheme in ("http", "https") and urlsplit(value).hostname):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value


class HubSpotCredentials(ConnectorCredentials):
    access_token: SecretStr = Field(
        description="Private app / OAuth access token (prompted, hidden, when not given)."
    )
    client_secret: SecretStr | None = Field(
        None, description="The app's client secret (verifies webhook signatures)."
    )
