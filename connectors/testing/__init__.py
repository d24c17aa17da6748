"""The connector kit for tests: the contract every connector must pass, for any connector's
own test suite to run against its own emulator of the CRM.

    from connectors.testing import ContractSuite, Harness, InjectedFault, WebhookReceiver

A connector's tests write a :class:`Harness` (drives the emulator as a CRM user would and
builds connectors pointed at it) and subclass :class:`ContractSuite` once with it; see
``connectors/testing/contract.py``. Importing this package needs pytest (a test dependency);
nothing in crmsync's running code imports it.
"""

from connectors.testing.contract import ContractSuite, RecordingGate, needs, pull
from connectors.testing.harness import Harness, InjectedFault, WebhookReceiver

__all__ = [
    "ContractSuite",
    "Harness",
    "InjectedFault",
    "RecordingGate",
    "WebhookReceiver",
    "needs",
    "pull",
]
