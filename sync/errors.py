"""The errors the domain reports to its callers: one tree, one root.

    SyncError                 anything ``sync/`` refuses or reports to whoever called it
    ├── NotFound              no such organisation, customer, connection, conflict, failure,
    │   │                     operator (another organisation's counts as none); a LookupError
    │   ├── CustomerNotFound  no such customer in the organisation
    │   ├── ContactNotFound   no such secondary contact of the customer
    │   └── UnknownConnection a webhook for a connection that does not exist (or another kind)
    ├── InvalidInput          a request that breaks a rule; nothing was written; a ValueError
    │   ├── InvalidRecord     values that would make an invalid customer (the model's rules,
    │   │                     each field named with the rule it broke)
    │   ├── CustomerRuleBroken a rule that needs the store to check (business entities)
    │   ├── CsvFileError      a file that cannot be read as a customer CSV (nothing imported)
    │   ├── ConnectionSetupError a connection that cannot be set up as asked
    │   ├── AlertSetupError   an alert webhook that cannot be used
    │   └── OperatorError     an operator request that cannot be done as asked
    ├── Duplicate             a value another record of the organisation already has
    │   ├── DuplicateCustomer another customer has this ``external_id`` or ``email``
    │   └── DuplicateContact  another contact of the customer has this ``email``
    ├── ConflictError         a conflict that cannot be resolved as asked (the CRM refused
    │   │                     the value, the value belongs to another customer, ...)
    │   └── ConflictNotOpen   the conflict is resolved already (or was, meanwhile)
    ├── ConnectionPaused      the connection is not active: resume it first
    ├── SignInError           an operator's sign-in that does not go through
    │   ├── SignInRefused     wrong e-mail or password (never says which)
    │   ├── SignInLimited     too many failed attempts: wait ``retry_after`` seconds
    │   └── ChooseOrganisation the e-mail and password fit several organisations: pick one
    ├── StaleRun              the run's lock was lost or taken over: its writes are refused
    ├── SecretKeyMissing      no usable ``CRMSYNC_SECRET_KEY``: credentials cannot be used
    ├── StoreNotCurrent       the store's migrations are not this code's: `crmsync db upgrade`
    └── AlertDeliveryFailed   the alert webhook's receiver did not take the alert (retried)

The CRM's own errors are not here: they are ``connectors.errors.ConnectorError`` and its
tree, classified at the CRM's edge. Each face maps every error of both trees once: the CLI
to an exit code (``cli/output.py``), the HTTP API to a status (``api/errors.py``); a test
checks that both maps cover every class below.

``NotFound`` is also a ``LookupError`` and ``InvalidInput`` a ``ValueError``, so callers that
speak in Python's own terms keep working; inside crmsync, catch these classes.
"""

from __future__ import annotations

from dataclasses import dataclass


class SyncError(Exception):
    """Base of every error the domain reports; ``str()`` is a sentence for an operator."""


# --- not found ------------------------------------------------------------------------------


class NotFound(SyncError, LookupError):
    """No such thing in this organisation (another organisation's included)."""


class CustomerNotFound(NotFound):
    """No such customer in the organisation; ``customer_id`` is the id asked for."""

    def __init__(self, customer_id: str):
        super().__init__(f"no customer {customer_id!r} in this organisation")
        self.customer_id = customer_id


class ContactNotFound(NotFound):
    """No such secondary contact of the customer (one of another customer included)."""


class UnknownConnection(NotFound):
    """A webhook for a connection that does not exist, or is of another kind."""


# --- invalid input --------------------------------------------------------------------------


class InvalidInput(SyncError, ValueError):
    """A request that breaks a rule: nothing was written; the message names the rule."""


class InvalidRecord(InvalidInput):
    """Values that would make an invalid billing customer; the message names each field
    and the rule it broke."""


class CustomerRuleBroken(InvalidInput):
    """A rule that needs the store to check (business entities)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CsvFileError(InvalidInput):
    """The file as a whole cannot be read as a customer CSV (nothing is imported)."""


class ConnectionSetupError(InvalidInput):
    """A connection that cannot be set up or changed as asked, with the reason."""


class AlertSetupError(InvalidInput):
    """An alert webhook that cannot be used (not an http(s) URL, no secret)."""


class OperatorError(InvalidInput):
    """An operator request that cannot be done as asked, with the reason."""


# --- duplicates -----------------------------------------------------------------------------


class Duplicate(SyncError):
    """A value that must be unique within the organisation is taken already."""


class DuplicateCustomer(Duplicate):
    """Another customer of the organisation already has this ``external_id`` or ``email``."""

    def __init__(self, field: str, value: str):
        super().__init__(f"a customer with {field} {value!r} already exists")
        self.field = field
        self.value = value


class DuplicateContact(Duplicate):
    """Another contact of the customer already has this ``email`` (a contact is matched
    with the CRM's by e-mail within its customer)."""

    def __init__(self, email: str):
        super().__init__(f"a contact of this customer with email {email!r} already exists")
        self.field = "email"
        self.value = email


# --- conflicts and connections --------------------------------------------------------------


class ConflictError(SyncError):
    """A conflict that cannot be resolved as asked, with the reason; it stays open."""


class ConflictNotOpen(ConflictError):
    """The conflict is resolved already, or was resolved while this resolution ran."""


class ConnectionPaused(SyncError):
    """The connection is not active (paused by an operator or by a spent daily allowance)."""


# --- sign-in --------------------------------------------------------------------------------


class SignInError(SyncError):
    """An operator's sign-in that does not go through."""


class SignInRefused(SignInError):
    """Wrong e-mail or password (never says which)."""


class SignInLimited(SignInError):
    """Too many failed attempts: refused without checking, for ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, (retry_after + 59) // 60)
        super().__init__(f"too many failed sign-ins: try again in {minutes} minute(s)")
        self.retry_after = retry_after


@dataclass(frozen=True)
class OrganisationChoice:
    id: str
    name: str


class ChooseOrganisation(SignInError):
    """The e-mail and password are right for operators of several organisations."""

    def __init__(self, choices: list[OrganisationChoice]) -> None:
        super().__init__("choose the organisation to sign in to")
        self.choices = choices


# --- the host and its runs ------------------------------------------------------------------


class StaleRun(SyncError):
    """The run's lock was taken over by another holder: its writes are refused."""


class SecretKeyMissing(SyncError):
    """No usable ``CRMSYNC_SECRET_KEY``: credentials can be neither stored nor read."""


class AlertDeliveryFailed(SyncError):
    """The receiver did not take the alert (it is retried); the message names no URL."""


class StoreNotCurrent(SyncError):
    """The store's migrations are not the ones this code ships (``found``: its revisions,
    ``needed``: the code's heads): nothing is run on it. Behind (crmsync was upgraded, the
    store was not): run ``crmsync db upgrade``; ``ahead``: a newer crmsync migrated it."""

    def __init__(self, found: list[str], needed: list[str], *, ahead: bool = False) -> None:
        at, needs = ", ".join(found), ", ".join(needed)
        if not found:
            message = "the store is not set up: run `crmsync db upgrade`"
        elif ahead:
            message = (
                f"the store is at revision {at}, newer than this crmsync (it needs {needs}): "
                "run the crmsync that migrated it"
            )
        else:
            message = (
                f"the store is at revision {at}, this crmsync needs {needs}: "
                "run `crmsync db upgrade`"
            )
        super().__init__(message)
        self.found = found
        self.needed = needed
        self.ahead = ahead


def all_errors() -> list[type[SyncError]]:
    """Every class of the tree, the root first (for the faces' maps and their tests)."""
    found: list[type[SyncError]] = [SyncError]
    for cls in found:
        found.extend(sub for sub in cls.__subclasses__() if sub not in found)
    return found
