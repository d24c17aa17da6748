"""crmsync's Pipedrive connector: Organizations <-> customers, Persons <-> contacts.

Found by crmsync through the ``crmsync.connectors`` entry point ``pipedrive``. Modules:
``config`` (the connection's settings and credentials models), ``client`` (httpx, errors),
``mapping`` (pure field mapping), ``webhooks`` (basic auth, v1 payloads), ``connector``;
``emulator`` is a local Pipedrive API for tests and trials.
"""

from crmsync_pipedrive.connector import PipedriveConnector

__all__ = ["PipedriveConnector"]
