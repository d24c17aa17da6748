"""Building the simple-salesforce client for one connection.

Authentication, in order of preference:

- ``credentials["access_token"]`` with ``settings["instance_url"]``: used as given;
- OAuth 2.0 at ``settings["token_url"]`` (default ``instance_url + /services/oauth2/token``):
  the ``refresh_token`` grant when a ``refresh_token`` is set, else ``client_credentials``
  with ``client_id`` / ``client_secret``.

With ``session_id`` simple-salesforce never refreshes a token itself (CRM_API_NOTES): a 401
reaches :func:`connectors.calls.call_crm`, which calls :meth:`SalesforceClient.refresh` once.

The ``requests.Session`` is ours: a custom CA (``settings["ca_bundle"]``) is set as
``verify`` with ``trust_env = False``, because ``REQUESTS_CA_BUNDLE`` in the environment
would otherwise win over ``session.verify`` (CRM_API_NOTES trap 2); transport retries are
off (``max_retries=0``) so that ``call_crm`` is the one place that retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce

from connectors.base import ApiUsage
from connectors.calls import CallCounter
from connectors.errors import AuthError, ConfigError, RetriableError

DEFAULT_API_VERSION = "59.0"


@dataclass(frozen=True)
class ClientSettings:
    instance_url: str | None
    api_version: str
    ca_bundle: str | None
    token_url: str | None
    request_timeout: float

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ClientSettings:
        instance_url = settings.get("instance_url")
        if instance_url is not None:
            instance_url = str(instance_url).rstrip("/")
            if not urlsplit(instance_url).hostname:
                raise ConfigError(f"instance_url is not a URL: {instance_url!r}")
        token_url = settings.get("token_url")
        if token_url is None and instance_url is not None:
            token_url = f"{instance_url}/services/oauth2/token"
        return cls(
            instance_url=instance_url,
            api_version=str(settings.get("api_version", DEFAULT_API_VERSION)),
            ca_bundle=settings.get("ca_bundle"),
            token_url=token_url,
            request_timeout=float(settings.get("request_timeout", 60.0)),
        )


_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def api_usage(headers: Mapping[str, str]) -> ApiUsage | None:
    """The org's rolling 24-hour allowance from ``Sforce-Limit-Info: api-usage=USED/TOTAL``,
    which Salesforce sends on every REST answer."""
    value = headers.get("Sforce-Limit-Info") or headers.get("sforce-limit-info")
    match = _USAGE.search(value or "")
    if match is None:
        return None
    return ApiUsage(int(match.group(1)), int(match.group(2)), "rolling 24 hours")


def make_session(
    ca_bundle: str | None, observe: Callable[[Mapping[str, str]], None]
) -> requests.Session:
    """A session that trusts ``ca_bundle`` (if set), never retries on its own, and shows
    every response's headers to ``observe`` (the rate gate: ``Sforce-Limit-Info``)."""
    session = requests.Session()
    if ca_bundle:
        session.verify = ca_bundle
        session.trust_env = False
    adapter = HTTPAdapter(max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)

    def show_headers(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        observe(response.headers)

    session.hooks["response"].append(show_headers)
    return session


class SalesforceClient:
    """Holds the simple-salesforce instance and the token; rebuilt on refresh."""

    def __init__(
        self,
        settings: ClientSettings,
        credentials: Mapping[str, str],
        session: requests.Session,
        counter: CallCounter,
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self.session = session
        self._counter = counter
        self._sf: Salesforce | None = None
        self._token = credentials.get("access_token") or None
        self._instance_url = settings.instance_url

    @property
    def can_refresh(self) -> bool:
        creds = self._credentials
        return bool(
            self.settings.token_url
            and (
                creds.get("refresh_token")
                or (creds.get("client_id") and creds.get("client_secret"))
            )
        )

    def sf(self) -> Salesforce:
        """The client; fetches a token first when the connection has none yet."""
        if self._sf is None:
            if self._token is None:
                self.refresh()
            else:
                self._build()
        assert self._sf is not None
        return self._sf

    def _build(self) -> None:
        if not self._instance_url:
            raise ConfigError("Salesforce connection needs settings.instance_url")
        assert self._token is not None
        self._sf = Salesforce(
            session_id=self._token,
            instance_url=self._instance_url,
            session=self.session,
            version=self.settings.api_version,
            # plain dicts: the default OrderedDict hook costs more than the JSON parse
            object_pairs_hook=None,
        )

    def refresh(self) -> None:
        """Get a new access token by OAuth (refresh-token or client-credentials grant)."""
        if not self.can_refresh:
            raise AuthError(
                "Salesforce refused the access token and the connection has no OAuth "
                "credentials (refresh_token, or client_id and client_secret) to get another"
            )
        creds = self._credentials
        if creds.get("refresh_token"):
            form = {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]}
            if creds.get("client_id"):
                form["client_id"] = creds["client_id"]
            if creds.get("client_secret"):
                form["client_secret"] = creds["client_secret"]
        else:
            form = {
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            }
        assert self.settings.token_url is not None
        self._counter.add()
        try:
            response = self.session.post(
                self.settings.token_url, data=form, timeout=self.settings.request_timeout
            )
        except requests.exceptions.SSLError as exc:
            raise ConfigError(f"TLS failure at the Salesforce token URL: {exc}") from exc
        except requests.RequestException as exc:
            raise RetriableError(f"Salesforce token URL unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise RetriableError(
                f"Salesforce token URL answered {response.status_code}",
                status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error", response.status_code)
            raise AuthError(
                f"Salesforce OAuth refused: {error}: {body.get('error_description', '')}".strip()
            )
        self._token = str(body["access_token"])
        self._instance_url = str(body.get("instance_url") or self._instance_url or "").rstrip("/")
        self._build()
