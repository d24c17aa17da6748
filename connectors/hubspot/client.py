"""hubspot-api-client wiring: one SDK client per connection, retries off, raw JSON calls.

Retries happen only in :func:`connectors.calls.call_crm`. By default the SDK's urllib3 pool
retries GET/PUT/DELETE on 429/503/413 when ``Retry-After`` is present (CRM_API_NOTES); the
``Retry`` below disables that and every other retry (connection, read, redirect, status), so
one SDK call is exactly one HTTP request and transport errors surface as themselves.

The SDK builds a new API client (and a new connection pool) each time a ``...api``
property is read, so the APIs are built once here, when first used, and kept. It imports
each API's modules when it is first read; they are imported with this module instead, so
that a process that loads its connectors as it starts (the worker, the web server) does not
in its first sync.

Bulk calls pass ``_preload_content=False`` and parse the body with ``orjson.loads``: the
SDK's model objects cost ~65 µs per record (CRM_API_NOTES), ``json.loads`` ~1 µs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
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


def _sdk_api(*path: str) -> cached_property[Any]:
    """An SDK API of the client's ``crm`` (``crm.companies.basic_api``...), built when
    first read and kept."""

    def build(apis: HubSpotApis) -> Any:
        api = apis.client.crm
        for name in path:
            api = getattr(api, name)
        return api

    return cached_property(build)


class HubSpotApis:
    """The SDK APIs one connection uses, each built once, when first used.

    Built lazily because building one is not free: the SDK reads its own package metadata
    (``importlib.metadata.version``) and makes a connection pool for each. A connector
    opened only to check a webhook's signature (the web server, once per delivery) uses
    none of them; under a burst of deliveries on many threads, that metadata read was
    seen to fail (``PackageNotFoundError``) and the delivery answered 500."""

    def __init__(self, access_token: str, host: str) -> None:
        self.client: Any = hubspot.Client.create(
            access_token=access_token, host=host.rstrip("/"), retry=NO_RETRIES
        )

    companies = _sdk_api("companies", "basic_api")
    companies_batch = _sdk_api("companies", "batch_api")
    companies_search = _sdk_api("companies", "search_api")
    contacts = _sdk_api("contacts", "basic_api")
    contacts_search = _sdk_api("contacts", "search_api")
    contacts_batch = _sdk_api("contacts", "batch_api")
    properties = _sdk_api("properties", "core_api")
    associations = _sdk_api("associations", "v4", "batch_api")

    def built(self) -> list[str]:
        """The APIs built so far."""
        return [name for name in _API_NAMES if name in self.__dict__]

    def pool_retries(self) -> list[Any]:
        """The urllib3 ``Retry`` of every pool (for the test that proves retries are off)."""
        apis = [getattr(self, name) for name in _API_NAMES]
        return [
            api.api_client.rest_client.pool_manager.connection_pool_kw["retries"] for api in apis
        ]


#: the SDK APIs :class:`HubSpotApis` builds, by attribute name
_API_NAMES = tuple(name for name, v in vars(HubSpotApis).items() if isinstance(v, cached_property))

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
