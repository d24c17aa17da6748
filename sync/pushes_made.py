"""What one page has pushed to the CRM, kept while the page is decided again.

A page the store refuses is decided again and written by bisection (``sync.pages``); its
CRM pushes were already made. Whatever pushes the same thing again takes the earlier
result instead: a record or contact once created is never created again, and the same
change is not written twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from connectors.base import PushResult


class _Push(Protocol):
    @property
    def crm_id(self) -> str | None: ...

    @property
    def fields(self) -> Any: ...


PushT = TypeVar("PushT", bound=_Push)


class PushesMadeBy(Generic[PushT]):
    """The pushes made, by the billing id ``key`` gives (a customer's, a contact's)."""

    def __init__(self, key: Callable[[PushT], str]) -> None:
        self._key = key
        self._made: dict[str, tuple[PushT, PushResult]] = {}

    def result(self, push: PushT) -> PushResult | None:
        """The earlier result for ``push``: any create of the same thing, or the same change
        of the same CRM record; None when it was not made."""
        made = self._made.get(self._key(push))
        if made is None:
            return None
        earlier, result = made
        if push.crm_id is None or (earlier.crm_id, earlier.fields) == (push.crm_id, push.fields):
            return result
        return None

    def add(self, push: PushT, result: PushResult) -> None:
        self._made[self._key(push)] = (push, result)
