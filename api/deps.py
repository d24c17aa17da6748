"""Request dependencies: the settings, the store session (one transaction per request) and
the authenticated organisation.

The organisation is named by the ``organisation`` header and proven by the ``x-api-key``
header; a missing or wrong pair is 401, and the key is never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sync import organisations
from sync.schema import require_current_store
from sync.settings import Settings
from sync.store.db import engine_for, transaction

_api_key_header = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="The organisation's API key (`crmsync orgs create` prints it once).",
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(settings: Annotated[Settings, Depends(get_settings)]) -> Engine:
    """The store's engine, once it is at this code's migrations (else ``StoreNotCurrent``:
    503, ``crmsync db upgrade``)."""
    engine = engine_for(settings.database_url)
    require_current_store(engine)
    return engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back when it
    raises. ``scope="function"`` (below) commits *before* the response is sent, so a client
    never sees a success that did not commit."""
    with transaction(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_organisation_id(
    session: SessionDep,
    organisation: Annotated[
        str | None, Header(description="The id of the organisation the request acts for.")
    ] = None,
    api_key: Annotated[str | None, Depends(_api_key_header)] = None,
) -> str:
    """The organisation the request acts for, once its API key is verified."""
    if not organisation or not api_key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the organisation and x-api-key headers are required",
        )
    if not organisations.authenticate(session, organisation.strip(), api_key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "the API key is not valid for this organisation"
        )
    return organisation.strip()


OrganisationId = Annotated[str, Depends(get_organisation_id)]
