"""The HubSpot connector (hubspot-api-client 12): companies <-> customers.

client.py     SDK wiring (retries off; raw JSON for bulk calls)
mapping.py    company properties <-> customer fields (pure)
errors.py     SDK exceptions -> connector errors, in one place
webhooks.py   signature v3 verification and event parsing
connector.py  :class:`HubSpotConnector` (settings and call counts in its docstring)
"""

from connectors.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConnector"]
