"""An in-memory HubSpot CRM v3 emulator (companies, contacts, associations, properties).

Serve ``HubSpotSandbox(...).app`` over plain http (``sandbox.server`` does); point
hubspot-api-client at it with ``hubspot.Client.create(access_token="any", host=URL)``.
Any non-empty bearer token is accepted unless the ``expired_token`` fault is set.

What it emulates (as far as hubspot-api-client 12.0.0 can tell) is listed in
``sandbox/hubspot/app.py``; the data model in ``store.py``; faults in ``faults.py``;
webhooks in ``webhooks.py``. Choices where HubSpot leaves room:

- **Addresses**: HubSpot's ``address`` is one line and ``address2`` a second; a third line
  goes to the custom property ``address3``, which a new portal does not have: only with
  ``address3=True`` (or :meth:`HubSpotSandbox.set_address3`), as if someone had created
  it. Seeded streets are split that way (without it, a third line joins ``address2``).
- **Merges** make a new record with a new id, as HubSpot's have since 2024: both old ids
  resolve to it on GET, batch read and PATCH, its ``hs_merged_object_ids`` (``;``-separated)
  lists them, and they are neither listed nor archived any more; the webhook's
  ``newObjectId`` names it. ``merge_keeps_primary_id=True`` (or
  :meth:`HubSpotSandbox.set_merges_keep_primary_id`) brings back the older behaviour: the
  primary keeps its id and the loser is archived. See ``Portal.merge``.
- **Batch** inputs' ``objectWriteTraceId`` come back on their results.
- **Search** orders ties on the sort property by object id, and answers 400 for
  ``after >= 10000``. ``paging.next`` is present whenever more results exist.
- **Batch** results come back shuffled (HubSpot does not promise input order). A unique
  property conflict is a per-record 207 error (``DUPLICATE_VALUE``); an unknown or read-only
  property, or a value HubSpot does not take (an invalid contact e-mail), fails the whole
  batch with 400. A batch *create* whose every input has a unique ``objectWriteTraceId``
  is multi-status instead: a refused input is a 207 error naming its trace id (fault
  ``multi_status=False`` turns that off).
- **Contacts** are identified by e-mail: an API create of a taken one (any case) answers
  409 ``CONFLICT`` (refusing an untraced batch create), and so does a change of e-mail to
  a taken one (a 207 error in a batch update) (``ObjectStore.email_owner``); seeds and
  control-method writes may repeat one.
- **Associations**: a contact's first company is its primary one (``associatedcompanyid``,
  v3 ``contact_to_company``, v4 type 1 / 2); every association is also unlabeled
  (``contact_to_company_unlabeled``, 279 / 280).
- Writes made through the API are changes by an integration (``changeSource:
  INTEGRATION``); the control methods act as a CRM user (``CRM_UI``). Both send webhooks.

Control: the methods below, and the same operations over HTTP under ``/_sandbox/...``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette

from sandbox.hubspot.app import Api, build_app
from sandbox.hubspot.crm import Portal, canonical_type
from sandbox.hubspot.faults import FaultState
from sandbox.hubspot.store import ADDRESS3, iso
from sandbox.hubspot.webhooks import WebhookConfig, WebhookDispatcher

__all__ = ["HubSpotSandbox"]


class HubSpotSandbox:
    """One emulated HubSpot portal: ``app`` (ASGI), ``public_url`` (set by the server)."""

    def __init__(
        self,
        seed: int = 0,
        companies: int = 0,
        *,
        time_zone: str = "UTC",
        merge_keeps_primary_id: bool = False,
        address3: bool = False,
        **faults: Any,
    ) -> None:
        self.seed = seed
        #: the portal's time zone setting: its daily API limit resets at midnight there
        self.time_zone = time_zone
        self.public_url = ""
        self.closing = False
        self.webhooks = WebhookDispatcher()
        self._merge_default = merge_keeps_primary_id
        self._address3_default = address3
        self.faults = FaultState(seed=seed, **faults)
        self.portal = Portal(
            on_change=self.webhooks.submit,
            merge_keeps_primary_id=merge_keeps_primary_id,
            address3=address3,
            search_delay_ms=self.faults.search_index_delay_ms,
        )
        self.api: Api
        self.app: Starlette = build_app(self)
        if companies:
            self.portal.seed(companies, seed=seed)

    def close(self) -> None:
        self.closing = True
        self.faults.clear()
        self.webhooks.close()

    # -- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the portal, clear faults, request counts and webhook deliveries; merges
        work, and ``address3`` exists, as the sandbox was made."""
        self.portal.clear()
        self.portal.merge_keeps_primary_id = self._merge_default
        self.set_address3(self._address3_default)
        self.clear_faults()
        self.reset_counts()
        self.api.limits.reset()
        self.webhooks.reset()

    def seed_companies(self, count: int) -> list[str]:
        """Create ``count`` realistic companies (2-3 contacts each); their ids, in order."""
        return [str(i) for i in self.portal.seed(count, seed=self.seed)]

    def create(
        self, object_type: str = "companies", properties: dict[str, Any] | None = None
    ) -> str:
        """Create a record as a CRM user would; its id."""
        return str(self.portal.create(object_type, properties or {}).id)

    def edit(
        self, object_id: str | int, properties: dict[str, Any], object_type: str = "companies"
    ) -> None:
        """Change a record as a CRM user would (bumps its modification stamp)."""
        store = self.portal.store(object_type)
        with self.portal.lock:
            rec = store.get(int(object_id), resolve_merged=False)
        self.portal.update(object_type, rec, properties)

    def archive(self, object_id: str | int, object_type: str = "companies") -> None:
        """Delete (archive) a record as a CRM user would."""
        store = self.portal.store(object_type)
        with self.portal.lock:
            rec = store.get(int(object_id), resolve_merged=False)
        self.portal.archive(object_type, rec)

    def restore(self, object_id: str | int, object_type: str = "companies") -> None:
        """Restore an archived record (it comes back with a new modification stamp)."""
        self.portal.restore(object_type, int(object_id))

    def merge(self, winner: str | int, loser: str | int, object_type: str = "companies") -> str:
        """Merge ``loser`` into ``winner`` (the primary) as a CRM user would; the surviving
        id: a new one, unless merges keep the primary's id."""
        return str(self.portal.merge(object_type, int(winner), int(loser)).id)

    def set_merges_keep_primary_id(self, keep: bool) -> None:
        """Merge as HubSpot did before 2024 (``True``: the primary keeps its id) or as it
        does now (``False``, the default: the merged record gets a new id)."""
        self.portal.merge_keeps_primary_id = keep

    def set_address3(self, present: bool) -> None:
        """Create (``True``) or delete the custom company property ``address3``, as a
        portal's admin would (deleting it drops its values)."""
        with self.portal.lock:
            self.portal.companies.set_property(ADDRESS3, present)

    def associate(self, contact_id: str | int, company_id: str | int) -> None:
        self.portal.associate(
            "contacts", int(contact_id), "companies", int(company_id), source="CRM_UI"
        )

    def touch(
        self,
        ids: Iterable[str | int] | None = None,
        ms: int | None = None,
        object_type: str = "companies",
    ) -> int:
        """Set many records' modification stamp to the same millisecond (``ms``, default
        now; ``ids`` None: every active record). No webhooks. The count touched."""
        return self.portal.touch(object_type, None if ids is None else [int(i) for i in ids], ms)

    def read(self, object_id: str | int, object_type: str = "companies") -> dict[str, Any]:
        """A record as stored: ``{id, properties, archived, archivedAt, mergedInto,
        associations}`` (archived records included; merged ids not resolved)."""
        store = self.portal.store(object_type)
        with self.portal.lock:
            rec = store.records.get(int(object_id))
            if rec is None:
                from sandbox.hubspot.store import StoreError

                raise StoreError(404, "OBJECT_NOT_FOUND", f"no {object_type} {object_id}")
            return {
                "id": str(rec.id),
                "properties": dict(rec.props),
                "archived": rec.archived_ms is not None,
                "archivedAt": iso(rec.archived_ms) if rec.archived_ms is not None else None,
                "mergedInto": str(rec.merged_into) if rec.merged_into is not None else None,
                "mergedAway": rec.merged_ms is not None,
                "associations": [str(i) for i in rec.links],
                "modifiedMs": rec.modified_ms,
            }

    def ids(self, object_type: str = "companies", archived: bool = False) -> list[str]:
        store = self.portal.store(object_type)
        with self.portal.lock:
            return [str(i) for i in (store.archived if archived else store.active)]

    def count(self, object_type: str = "companies") -> int:
        return len(self.portal.store(canonical_type(object_type)).active)

    # -- requests ------------------------------------------------------------------------

    def request_counts(self) -> dict[str, int]:
        """Requests served per CRM API endpoint (``"GET /crm/v3/objects/{object_type}"``)."""
        with self.api.counts_lock:
            return dict(self.api.counts)

    def api_calls(self) -> int:
        with self.api.counts_lock:
            return sum(self.api.counts.values())

    def reset_counts(self) -> None:
        with self.api.counts_lock:
            self.api.counts.clear()
        self.faults.reset_injected()

    def fault_counts(self) -> dict[str, int]:
        """The answers faults gave since the counts were reset, by kind (``rate_limit``,
        ``server_error``, ``hang``, ``expired_token``), and the 429s of the portal's own
        limits (``limit``)."""
        return self.faults.injected_counts()

    # -- faults --------------------------------------------------------------------------

    def set_faults(self, **faults: Any) -> None:
        """Set faults by name (see ``sandbox.hubspot.faults``)."""
        self.faults.set(**faults)

    def clear_faults(self) -> None:
        self.faults.clear()

    def index_now(self) -> None:
        """The search index has every write made so far, whatever the
        ``search_index_delay_seconds`` fault made it wait for: a test decides when a late
        write reaches search, not the clock."""
        with self.portal.lock:
            for store in (self.portal.companies, self.portal.contacts):
                store.index_pending()

    def new_day(self) -> None:
        """The portal's midnight passes: its daily API allowance is whole again."""
        self.api.limits.new_day()

    # -- webhooks ------------------------------------------------------------------------

    def configure_webhooks(self, **settings: Any) -> WebhookConfig:
        """``url``, ``client_secret``, ``enabled``, ``duplicate``, ``max_attempts``,
        ``retry_delay``, ``subscriptions``, ... (see ``WebhookConfig``)."""
        return self.webhooks.configure(**settings)

    def flush_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every event so far was delivered (or given up)."""
        return self.webhooks.flush(timeout)
