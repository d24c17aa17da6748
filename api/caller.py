"""Who an action of the HTTP API is done by: the organisation, proven by its API key, and
how the audit trail names that key.

Routes that act (resolve a conflict, retry failures, queue a sync) authenticate in a short
transaction of their own, so that none is held open while they call the CRM or sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy import Engine

from api.deps import _api_key_header, get_engine, get_organisation_id
from sync.store.db import transaction

#: how many leading characters of a key name it in the audit trail (the store keeps the
#: same prefix beside the key's hash to tell keys apart; the rest stays secret)
KEY_PREFIX = 8


@dataclass(frozen=True)
class Caller:
    """An authenticated API caller."""

    organisation_id: str
    #: the audit trail's name for the caller: ``api:key crm_AbCd…``
    actor: str


def get_caller(
    engine: Annotated[Engine, Depends(get_engine)],
    organisation: Annotated[
        str | None, Header(description="The id of the organisation the request acts for.")
    ] = None,
    api_key: Annotated[str | None, Depends(_api_key_header)] = None,
) -> Caller:
    """The organisation once its API key is verified (401 otherwise), and its actor."""
    with transaction(engine) as session:
        organisation_id = get_organisation_id(session, organisation, api_key)
    return Caller(organisation_id, f"api:key {(api_key or '')[:KEY_PREFIX]}…")


CallerDep = Annotated[Caller, Depends(get_caller)]
EngineDep = Annotated[Engine, Depends(get_engine)]
