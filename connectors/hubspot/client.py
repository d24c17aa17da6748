"""hubspot-api-client wiring: one SDK client per connection, retries off, raw JSON calls.

Retries happen only in :func:`connectors.calls.call_crm`. By default the SDK's urllib3 pool
retries GET/PUT/DELETE on 429/503/413 when ``Retry-After`` is present (CRM_API_NOTES); the
``Retry`` below disables that and every other retry (connection, read, redirect, status), so
one SDK call is exactly one HTTP request and transport errors surface as themselves.

The SDK builds a new API client (and a new connection pool) each time a ``...api``
property is read, so the APIs are built once here and kept. It imports each API's modules
when it is first read; they are imported with this module instead, so that a process that
loads its connectors as it starts (the worker, the web server) does not in its first sync.

Bulk calls pass ``_preload_content=False`` and parse the body with ``orjson.loads``: the
SDK's model objects cost ~65 µs per record (CRM_API_NOTES), ``json.loads`` ~1 µs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import hubspot
import hubspot.crm.associations.v4
import hubspot.crm.companies
import hubspot.crm.contacts
import hubspot.crm.properties
import hubspot.discovery.crm.associations.v4.discovery
import hubspot.discovery.crm.companies.discovery
import hubspot.discovery.crm.contacts.discovery
import hubspot.discovery.crm.discovery
import hubspot.discovery.crm.properties.discovery
import orjson
from urllib3.util.retry import Retry

NO_RETRIES = Retry(
    total=False,
    connect=0,
    read=0,
    redirect=0,
    status=0,
    other=0,
    status_forcelist=(),
    respect_retry_after_header=False,
    raise_on_status=False,
    raise_on_redirect=False,
)


class HubSpotApis:
    """The SDK APIs one connection uses, built once."""

    def __init__(self, access_token: str, host: str) -> None:
        self.client: Any = hubspot.Client.create(
            access_token=access_token, host=host.rstrip("/"), retry=NO_RETRIES
        )
        crm = self.client.crm
        self.companies: Any = crm.companies.basic_api
        self.companies_batch: Any = crm.companies.batch_api
        self.companies_search: Any = crm.companies.search_api
        self.contacts: Any = crm.contacts.basic_api
        self.contacts_search: Any = crm.contacts.search_api
        self.contacts_batch: Any = crm.contacts.batch_api
        self.properties: Any = crm.properties.core_api
        self.associations: Any = crm.associations.v4.batch_api

    def pool_retries(self) -> list[Any]:
        """The urllib3 ``Retry`` of every pool (for the test that proves retries are off)."""
        apis = [
            self.companies,
            self.companies_batch,
            self.companies_search,
            self.contacts,
            self.contacts_search,
            self.contacts_batch,
            self.properties,
            self.associations,
        ]
        return [
            api.api_client.rest_client.pool_manager.connection_pool_kw["retries"] for api in apis
        ]


Observer = Callable[[Mapping[str, str]], None]


def raw_call(
    method: Callable[..., Any], timeout: float, observe: Observer, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """Call an SDK method for its raw response; (status, parsed JSON body or {})."""
    response = method(**kwargs, _preload_content=False, _request_timeout=timeout)
    try:
        data = response.data
    finally:
        response.release_conn()
    observe(response.headers)
    body: Any = orjson.loads(data) if data else {}
    return int(response.status), body if isinstance(body, dict) else {"results": body}
