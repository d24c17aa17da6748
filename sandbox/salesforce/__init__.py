"""An in-memory Salesforce org speaking the REST API, for tests, demos and benchmarks.

``SalesforceSandbox(seed, accounts)`` holds the org and its ASGI ``app``; ``sandbox.server``
serves it over TLS and sets ``public_url``. See :mod:`sandbox.salesforce.app` for the routes
and the control API, :mod:`sandbox.salesforce.soql` for the SOQL subset.
"""

from __future__ import annotations

from sandbox.salesforce.app import Faults, SalesforceSandbox
from sandbox.salesforce.store import CRM_USER, INTEGRATION_USER

__all__ = ["CRM_USER", "INTEGRATION_USER", "Faults", "SalesforceSandbox"]
