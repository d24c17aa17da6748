"""The Salesforce connector (simple-salesforce): Accounts <-> customers.

Modules: ``client`` (token, instance URL, session), ``mapping`` (pure field mapping),
``errors`` (classification), ``webhooks`` (Outbound Messages), ``connector``.
"""

from __future__ import annotations

from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.webhooks import ack_response

__all__ = ["SalesforceConnector", "ack_response"]
