"""What the operations routes share: paging, and a connection named as a filter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from sqlalchemy.orm import Session

from api.errors import ERROR_RESPONSES, Message
from sync.errors import NotFound
from sync.store import sync_repository as repo
from sync.store.models import ConnectionRow


def responses(what: str) -> dict[int | str, dict[str, Any]]:
    """The error answers of a router whose 404 is ``what`` not in this organisation."""
    return {
        **ERROR_RESPONSES,
        404: {"model": Message, "description": f"No such {what} in this organisation"},
    }


Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many")]
# SQL's OFFSET is a signed 64-bit integer: a larger one is bad input, not a 500
Offset = Annotated[int, Query(ge=0, le=2**63 - 1, description="Skip this many first")]
ConnectionFilter = Annotated[
    str | None, Query(max_length=255, description="Only this connection's (id or name)")
]


def require_connection(session: Session, organisation_id: str, ref: str) -> ConnectionRow:
    """The organisation's connection by id or name (as the CLI takes it), or
    :class:`NotFound` (another organisation's included)."""
    found = repo.find_connection(session, organisation_id, ref.strip())
    if found is None:
        raise NotFound(f"no connection {ref!r} in this organisation")
    return found
