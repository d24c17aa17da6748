"""The connector contract: what the sync engine may ask of any CRM.

A connector speaks in *plain customer field names*, flattened with dots, so that it needs
no model from ``sync/``:

    customer_name, email, phone_number, currency,
    address.line1 .. address.line3, address.city, address.state, address.zipCode,
    address.country, address.country_code,
    ship_to_address.<same parts>, custom_data.<key>

A value is a ``str``, ``bool``, ``int``, ``float`` or ``None`` (empty in the CRM).

The engine drives a connector like this:

    connector = registry.create("hubspot", ConnectionConfig(...))
    for page in connector.pull_customers(cursor, full=False):
        ...                       # merge page.records, commit, then store page.cursor
    results = connector.push_customers([CustomerPush(...), ...])

Reading (``pull_*``) and writing (``push_customers``) are separate. Every API call goes
through :func:`connectors.calls.call_crm`, the one place where errors are classified and
retriable errors are retried (see ``connectors/errors.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, SecretStr

FieldValue = str | bool | int | float | None
CustomerFields = dict[str, FieldValue]

Direction = Literal["both", "crm_to_billing", "billing_to_crm", "none"]


@dataclass(frozen=True)
class ConnectionConfig:
    """Everything a connector needs to talk to one tenant's CRM.

    ``credentials`` holds decrypted secrets (tokens, client secret, webhook secret); the
    connector must never log or print them. ``settings`` holds the non-secret options
    (instance URL / host, CA bundle, external-ID field, API version, ...).
    ``field_map`` holds per-connection overrides: customer field -> CRM field name, added
    to (or replacing) the connector's default map; a value of ``None`` unmaps a field.
    ``organisation_id`` labels the metrics of the connector's calls (pass it on to
    :func:`connectors.calls.call_crm`).
    """

    connection_id: str
    credentials: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    field_map: Mapping[str, str | None] = field(default_factory=dict)
    #: the organisation the connection belongs to: a label of the connector's metrics
    organisation_id: str = ""


#: the connection setting that switches the contacts sync off: ``--setting contacts=false``
CONTACTS_SETTING = "contacts"


def syncs_contacts(settings: Mapping[str, Any]) -> bool:
    """Whether a connection syncs the CRM's contacts into the customers' secondary
    contacts (the default); with ``contacts=false`` a connector pulls none (no API call):
    accounts / companies only."""
    return settings.get(CONTACTS_SETTING, True) is not False


@dataclass(frozen=True)
class CrmField:
    """One field the CRM object has, as ``describe_fields`` reports it."""

    name: str
    label: str
    type: str
    updateable: bool = True


@dataclass(frozen=True)
class CrmCustomer:
    """A CRM account / company as customer fields.

    ``deleted`` is true for a record in the recycle bin / archived. ``merged_into`` names the
    surviving record when this one was merged away; ``merged_from`` lists, on a survivor,
    the records merged into it (HubSpot's ``hs_merged_object_ids``: since 2024 a HubSpot
    merge makes a new record under a new id, and the old ids are never listed again, so a
    connector also reports each of them as ``deleted`` with ``merged_into`` the survivor,
    just before it). ``modified_at`` is the CRM's own change stamp (Salesforce
    ``SystemModstamp``, HubSpot ``hs_lastmodifieddate``). ``billing_id`` is the billing
    customer id crmsync wrote into the record's external-ID field / unique property (None
    for records made by CRM users and not linked since), so that a record is recognised
    after a lost commit or a merge instead of duplicated.
    """

    id: str
    fields: CustomerFields
    modified_at: datetime | None = None
    deleted: bool = False
    merged_into: str | None = None
    billing_id: str | None = None
    merged_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrmContact:
    """A CRM contact attached to a CRM account / company (``customer_id``, may be None).
    ``merged_into`` / ``merged_from`` as for :class:`CrmCustomer`."""

    id: str
    customer_id: str | None
    name: str
    email: str | None
    modified_at: datetime | None = None
    deleted: bool = False
    merged_into: str | None = None
    merged_from: tuple[str, ...] = ()
    #: the communications the contact gets (``billing,legal``: sorted, comma-separated)
    #: from the connection's communications field; None when no such field is mapped
    communications: str | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a pull. ``cursor`` resumes the pull *after* this page; the engine stores
    it in the same transaction as the page's records, so a killed run resumes here."""

    records: list[T]
    cursor: str | None


@dataclass(frozen=True)
class CustomerPush:
    """A billing-side change to write to the CRM.

    ``crm_id`` None means create: the connector creates the record idempotently, keyed by
    ``billing_id`` (Salesforce: upsert on the external-ID field; HubSpot: batch upsert on a
    unique property), so that a retry after a crash never creates a second record, and the
    record carries the billing id from then on. ``fields`` holds only the fields to write.
    ``write_billing_id`` on an update also writes ``billing_id`` into the record's
    external-ID field / unique property (a record linked to a customer billing already
    had), so the record can always be found again.
    """

    billing_id: str
    crm_id: str | None
    fields: CustomerFields
    write_billing_id: bool = False


#: the contact fields a :class:`ContactPush` may carry
CONTACT_FIELDS = ("name", "email", "communications")
#: the connection setting naming the CRM contact field that holds a contact's
#: communications (billing, updates, legal); unset: communications are not synced
COMMUNICATIONS_SETTING = "contact_communications_field"


@dataclass(frozen=True)
class ContactPush:
    """A billing-side secondary contact to write to the CRM.

    ``crm_id`` None means create a contact associated with the account / company
    ``account_id`` (Salesforce ``Contact.AccountId``, HubSpot's primary company
    association). ``fields`` holds only the fields to write, among ``name``, ``email`` and
    ``communications`` (sorted, comma-separated: ``billing,legal``). Results are matched by
    ``contact_id`` (the billing contact's id), never by position.

    ``associate`` on an update (a CRM contact adopted: found by e-mail rather than
    created) also associates the contact with ``account_id``: ``"primary"`` when it has no
    primary account / company yet, else ``"other"`` (a further association; its primary
    one stays). ``fields`` may then be empty: only the association is written.
    """

    contact_id: str
    crm_id: str | None
    account_id: str
    fields: Mapping[str, str | None]
    associate: Literal["primary", "other"] | None = None


@runtime_checkable
class ContactWriter(Protocol):
    """What a connector whose capabilities say ``contact_push`` provides besides
    :class:`Connector`: billing-side contacts written to the CRM."""

    def push_contacts(self, pushes: Sequence[ContactPush]) -> list[PushResult]:
        """Create or update contacts in batches (Salesforce 200 per sObject Collections
        call, HubSpot 100 per batch); one result per push, its ``billing_id`` the push's
        ``contact_id``. Raises only for whole-batch failures (retriable, auth)."""


@runtime_checkable
class ContactFinder(Protocol):
    """What a connector whose CRM keeps one contact per e-mail address provides besides
    :class:`ContactWriter` (HubSpot: a create of a taken e-mail is refused, 409 "Contact
    already exists"): the CRM's contacts that hold given e-mails, read before creating so
    that a billing contact adopts the CRM's contact instead of failing on every push."""

    def find_contacts(self, emails: Sequence[str]) -> list[CrmContact]:
        """The CRM contacts holding ``emails`` (any case; those none holds are left out),
        ``customer_id`` their primary account / company (None: none); one call per 100
        e-mails (HubSpot: batch read with ``idProperty=email``)."""


@runtime_checkable
class FieldResolver(Protocol):
    """What a connector that follows the CRM's own field list provides besides
    :class:`Connector`: which fields of its default map this CRM account lacks.

    CRM accounts differ: a Salesforce org without multi-currency has no ``CurrencyIsoCode``,
    a HubSpot portal has no ``address3`` unless someone created it. The default map keeps
    the fields the CRM's describe / properties show and leaves those out, each with why.
    """

    def unavailable_fields(self) -> dict[str, str]:
        """The customer fields of the default map that this CRM account lacks -> why (one
        describe call). Raises ``ConfigError`` saying how to fix it when a field the
        connection maps explicitly (``ConnectionConfig.field_map``) or a required one (the
        name, the external-id field) does not exist."""


@runtime_checkable
class MergeReader(Protocol):
    """What a connector whose CRM marks a merge only on the merged-away records provides
    besides :class:`Connector`: named records read together with the records merged into
    them.

    A Salesforce merge updates the master (an Outbound Message may fire for it) and deletes
    the losers with ``MasterRecordId`` set; nothing fires for a delete, and nothing on the
    master says it was one. A webhook naming the master is synced through this read, so the
    losers' links follow it at once rather than at the next incremental pull.
    """

    def pull_customers_with_merged(self, ids: Sequence[str]) -> list[CrmCustomer]:
        """What ``pull_customers_by_ids(ids)`` returns, then each record merged away into
        one of them (``deleted``, ``merged_into`` naming it), read in the same calls."""


#: every customer field a connection may map (``custom_data.<key>`` aside), in order
CUSTOMER_FIELDS: tuple[str, ...] = (
    "customer_name",
    "email",
    "phone_number",
    "currency",
    *(
        f"{group}.{part}"
        for group in ("address", "ship_to_address")
        for part in (
            "line1",
            "line2",
            "line3",
            "city",
            "state",
            "zipCode",
            "country",
            "country_code",
        )
    ),
)


COMMUNICATIONS = ("billing", "updates", "legal")


def communications_from_crm(raw: object) -> str:
    """A CRM's multi-select value (``legal;billing``: Salesforce multi-select picklists and
    HubSpot checkbox properties separate values with ``;``) as the canonical sorted,
    comma-separated form; values other than billing, updates and legal are left out."""
    parts = {p.strip().lower() for p in str(raw or "").replace(",", ";").split(";")}
    return ",".join(c for c in sorted(COMMUNICATIONS) if c in parts)


def communications_to_crm(value: str | None) -> str | None:
    """The canonical form as a CRM multi-select value (``billing;legal``; None: empty)."""
    parts = [p for p in (value or "").split(",") if p]
    return ";".join(parts) or None


def split_name(name: str) -> tuple[str | None, str]:
    """A contact's name as CRMs hold it: (first name, last name). The last word is the
    last name (required by Salesforce); the words before it the first name."""
    words = name.split()
    if not words:
        return None, ""
    return (" ".join(words[:-1]) or None), words[-1]


@dataclass(frozen=True)
class RecordError:
    """A record the CRM refused (validation, duplicate, lock), with the CRM's own words."""

    kind: Literal["validation", "duplicate", "retriable", "not_found", "other"]
    code: str
    message: str


@dataclass(frozen=True)
class PushResult:
    """The outcome for one :class:`CustomerPush`, matched by ``billing_id`` (never by
    position). ``crm_id`` is set on success: the new id for a create, and the survivor's id
    for an update of a record the CRM merged away since (HubSpot answers a write to an old
    id with the new record)."""

    billing_id: str
    crm_id: str | None
    error: RecordError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook as received: ``url`` is the full public URL the CRM called."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


WebhookEventKind = Literal["changed", "created", "deleted", "merged", "restored"]


@dataclass(frozen=True)
class WebhookEvent:
    """One event from a webhook body. ``key`` is the CRM's de-duplication key (HubSpot
    ``eventId``, Salesforce Notification ``Id``); ``crm_id`` the record it names."""

    key: str
    kind: WebhookEventKind
    object_type: Literal["customer", "contact"]
    crm_id: str
    occurred_at: datetime | None = None
    merged_into: str | None = None
    merged_ids: tuple[str, ...] = ()
    payload: Mapping[str, Any] = field(default_factory=dict)


class RateGate(Protocol):
    """Shared rate budget for one connection; ``connectors`` only sees this interface.

    The default is :class:`connectors.calls.LocalRateGate`; ``tasks/`` supplies one kept in
    Redis so that every worker shares the budget and every worker waits when the CRM says
    wait."""

    def acquire(self) -> None:
        """Block until one API call may be made; raise
        :class:`connectors.errors.DailyLimitExceeded` while the connection is suspended
        (no call is made, so none is burnt)."""

    def pause(self, seconds: float) -> None:
        """The CRM asked everyone to wait ``seconds`` (429, Retry-After, limit exceeded)."""

    def suspend(self, until: datetime, reason: str) -> None:
        """The CRM's daily allowance is spent: every worker's ``acquire`` refuses until
        ``until`` (timezone-aware)."""

    def observe(self, headers: Mapping[str, str]) -> None:
        """Correct the budget from the CRM's rate-limit headers."""


@dataclass(frozen=True)
class ApiUsage:
    """The CRM's own count of the allowance used, as its last answer said (Salesforce
    ``Sforce-Limit-Info``, HubSpot ``X-HubSpot-RateLimit-Daily[-Remaining]``)."""

    used: int
    limit: int
    #: what the limit counts: ``rolling 24 hours`` (Salesforce) or ``day`` (HubSpot)
    window: str


class CallStats(Protocol):
    """What a connector counts of its calls (``connectors.calls.CallCounter`` has it)."""

    @property
    def count(self) -> int:
        """API calls made (retries and refused calls included)."""

    rate_limit_waits: int
    rate_limited_seconds: float
    retries: int


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do beyond the core of the contract (pull, pull by ids, push).

    ``contact_push`` means the connector is also a :class:`ContactWriter`: contacts added
    or changed on the billing side are written to the CRM. ``merges`` says where a CRM
    merge shows as one (``merged_into`` naming the survivor):
    ``"pulls"`` (pulls and pulls by ids report it), ``"webhooks"`` (only webhook events
    do; a pull sees the merged-away record deleted), or None. ``field_describe`` means
    ``describe_fields`` reads the CRM's own field list (so ``check`` can name a field that
    does not exist). ``contact_find`` means the connector is also a
    :class:`ContactFinder` (its CRM keeps one contact per e-mail: a billing contact adopts
    the CRM's contact of its e-mail instead of creating one). The contract kit runs the
    cases that fit what a connector declares.
    """

    webhooks: bool = False
    merges: Literal["pulls", "webhooks"] | None = None
    contacts: bool = False
    field_describe: bool = False
    contact_push: bool = False
    contact_find: bool = False

    def names(self) -> list[str]:
        """The capabilities as short words (for ``crmsync connectors list``)."""
        words = ["webhooks"] if self.webhooks else []
        if self.merges:
            words.append("merges" if self.merges == "pulls" else "merges (webhooks)")
        if self.contacts:
            words.append("contacts")
        if self.contact_push:
            words.append("contacts both ways")
        if self.contact_find:
            words.append("contacts found by e-mail")
        if self.field_describe:
            words.append("field describe")
        return words


class ConnectorSettings(BaseModel):
    """Base of a connector's settings model: the non-secret options of a connection.

    Each field becomes an option of ``crmsync connections add KEY`` (``--field-name``, its
    ``description`` the help) and a field of the console's form; values are checked by the
    model, and its error messages are what the operator sees. Unknown settings are refused.
    """

    model_config = ConfigDict(extra="forbid")


class ConnectorCredentials(BaseModel):
    """Base of a connector's credentials model: what is stored encrypted.

    ``SecretStr`` fields are secrets: read from an option, its environment variable
    (``KEY_FIELD_NAME``, e.g. ``HUBSPOT_ACCESS_TOKEN``) or a hidden prompt, and never shown.
    """

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def to_prompt(cls, given: Mapping[str, object]) -> list[str]:
        """The secret fields to ask for at a hidden prompt when ``given`` lacks them: by
        default every required ``SecretStr`` field not given. Override for rules such as
        "one of these three"."""
        return [
            name
            for name, info in cls.model_fields.items()
            if info.annotation is SecretStr and info.is_required() and not given.get(name)
        ]


def webhook_setup_for(connector: type, url: str) -> str:
    """How an operator points the CRM's webhooks at ``url`` (this connection's webhook
    route): the connector's own words, its optional class attribute ``webhook_setup`` (a
    format string with ``{url}``), or a plain line for a connector that has none."""
    text = getattr(connector, "webhook_setup", None)
    if isinstance(text, str) and text:
        return text.format(url=url)
    return f"Point the CRM's webhooks at {url}"


@runtime_checkable
class Connector(Protocol):
    """What every CRM connector provides. Construct with ``Connector(config, gate=...)``.

    A connector with webhooks may also say, as a class attribute ``webhook_setup`` (a
    format string with ``{url}``), how an operator points the CRM's webhooks at crmsync;
    ``connections add`` and the console's connection page show it
    (:func:`webhook_setup_for`).
    """

    key: ClassVar[str]
    #: what it can do beyond the core (see ``Capabilities``)
    capabilities: ClassVar[Capabilities]
    #: the connection settings and credentials it takes, as pydantic models
    settings_model: ClassVar[type[ConnectorSettings]]
    credentials_model: ClassVar[type[ConnectorCredentials]]
    #: the customer fields this connection maps (defaults plus overrides), in a stable order
    mapped_fields: tuple[str, ...]
    #: API calls made by this instance so far (for run records and benchmarks)
    api_calls: int

    @property
    def calls(self) -> CallStats:
        """The calls made, with the rate-limit waits and retries among them."""

    @property
    def api_usage(self) -> ApiUsage | None:
        """The CRM's allowance as its last answer reported it (None before any answer)."""

    def check(self) -> None:
        """Authenticate and validate the field map against ``describe_fields``; raise
        ``ConfigError`` / ``AuthError`` with a clear message. Used when a connection is
        added and by ``connections test``."""

    def describe_fields(self) -> list[CrmField]:
        """The fields of the CRM object behind a customer."""

    def pull_customers(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmCustomer]]:
        """Changed (``full=False``) or all (``full=True``) accounts / companies since
        ``cursor``, oldest change first, including deleted and merged ones, as pages."""

    def pull_contacts(
        self, cursor: str | None, *, full: bool = False
    ) -> Iterator[Page[CrmContact]]:
        """Changed or all contacts since ``cursor``, with the account / company they
        belong to."""

    def pull_customers_by_ids(self, ids: Sequence[str]) -> list[CrmCustomer]:
        """The named accounts / companies (batched); missing ones are returned deleted."""

    def push_customers(self, pushes: Sequence[CustomerPush]) -> list[PushResult]:
        """Write billing-side changes and creates in batches (Salesforce 200, HubSpot 100);
        one result per push. Raises only for whole-batch failures (retriable, auth)."""

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Raise ``WebhookRejected`` unless the request is authentic and fresh."""

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        """The events of a verified webhook body; raise ``WebhookRejected`` (400) when
        malformed."""
