"""Where a HubSpot pull stands: a typed cursor, its JSON form, and its transitions.

A pull goes through these modes (each page's cursor is stored with the page, so a pull
resumes from its last committed page):

    full      the list API, page by page (``after``), noting the newest modification seen;
              when done it hands on a ``range`` cursor (:func:`after_full`)
    range     search on the modification time, keyset-paged from ``watermark_ms`` on, the
              ids already returned at that millisecond left out (``NOT_IN``), or none left
              at it (``strict``: ``GT`` only)
    ties      more than :data:`NOT_IN_LIMIT` records share ``watermark_ms``: they are walked
              by id (``hs_object_id GT tie_id``), then the pull goes on ``strict``
    archived  the archived list, for deletions (and merges) since ``archive_watermark_ms``;
              when done it hands on the next pull's ``range`` cursor (:func:`after_archived`)

HubSpot's search index lags behind writes (its search guide warns that newly created or
updated objects may take a few moments to appear in search results,
https://developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm): a record
modified at T may be indexed only after a search already returned one modified at T+1. So
the watermark handed to the next pull is never later than when this pull's search began
(``search_started_ms``, our clock) less the clock skew and the search lag; when it is
capped, the next pull searches ``GTE`` the cap with no ids left out, and reads again the
records modified since (unchanged, they change nothing). The search itself has no upper
bound: an edit the index has is read by the first pull after it.

Each transition is a small pure function from a cursor (and what one page said) to the next
cursor; the connector only calls the API and builds records. The JSON form keeps the short
keys of the dict cursors stored before the cursor was typed (``wm``, ``awm``, ``aids``,
``anext``, ``tie_id``...), so a stored cursor reads back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from connectors.errors import ConfigError

Mode = Literal["full", "range", "ties", "archived"]
MODES: tuple[Mode, ...] = ("full", "range", "ties", "archived")

#: at most this many ids in one ``NOT_IN`` filter; more at one millisecond: walk them by id
NOT_IN_LIMIT = 100

#: (modification or archive time in ms, record id) of each result of a page, in order
Stamps = Sequence[tuple[int, str]]


@dataclass(frozen=True)
class HubSpotCursor:
    """A HubSpot pull's position. Times are HubSpot's, in ms since the epoch."""

    mode: Mode
    #: the list API's paging token (``full`` and ``archived``)
    after: str | None = None
    #: ``full``: when the full pull started (our clock)
    full_started_ms: int = 0
    #: ``full``: the newest modification seen so far
    newest_ms: int = -1
    #: ``range``: every record modified before this was returned
    watermark_ms: int = -1
    #: the ids returned at ``watermark_ms`` (``range``) or at ``newest_ms`` (``full``)
    at_watermark: tuple[str, ...] = ()
    #: ``range``: every record at ``watermark_ms`` was returned: search after it only
    strict: bool = False
    #: ``ties``: the last id returned at ``watermark_ms``
    tie_id: int = 0
    #: ``ties``: the ids at ``watermark_ms`` returned before the walk by id began
    tie_seen: tuple[str, ...] = ()
    #: merged-away id -> the survivor's id, as seen by this pull's searches
    merged: Mapping[str, str] = field(default_factory=dict)
    #: every deletion archived before this was reported
    archive_watermark_ms: int = 0
    #: the ids reported as archived at ``archive_watermark_ms``
    archive_ids: tuple[str, ...] = ()
    #: ``archived``: when this pull's walk of the archived list started (our clock)
    archive_started_ms: int = 0
    #: ``archived``: the newest archive time seen by this walk, and its ids
    archive_newest_ms: int = 0
    archive_newest_ids: tuple[str, ...] = ()
    #: ``range``/``ties``/``archived``: when this pull's first search was sent (our clock;
    #: 0: not yet). The next pull's watermark is capped by it (see the module docstring)
    search_started_ms: int = 0

    def to_json(self) -> str:
        """The cursor as stored: the fields that differ from their default, by JSON key."""
        data: dict[str, Any] = {"mode": self.mode}
        for item in fields(self):
            value = getattr(self, item.name)
            default = item.default_factory() if callable(item.default_factory) else item.default
            if item.name != "mode" and value != default:
                data[_KEYS[item.name]] = list(value) if isinstance(value, tuple) else value
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HubSpotCursor:
        """A stored cursor (this form, or the dict cursors stored before it was typed).
        Raises ``ConfigError`` when ``text`` is not a HubSpot cursor."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("mode") not in MODES:
                raise ValueError("no mode")
            values: dict[str, Any] = {}
            for item in fields(cls):
                key = _KEYS[item.name]
                if key in data and data[key] is not None:
                    values[item.name] = _typed(item.name, data[key])
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"not a HubSpot cursor ({error}): {text[:200]!r}") from None

    def archived_already(self, archived_ms: int, record_id: str) -> bool:
        """Whether a deletion at ``archived_ms`` was reported by an earlier pull."""
        return archived_ms < self.archive_watermark_ms or (
            archived_ms == self.archive_watermark_ms and record_id in self.archive_ids
        )


# the stored JSON keys (those of the dict cursors before), by field
_KEYS = {
    "mode": "mode",
    "after": "after",
    "full_started_ms": "start",
    "newest_ms": "max",
    "watermark_ms": "wm",
    "at_watermark": "ids",
    "strict": "strict",
    "tie_id": "tie_id",
    "tie_seen": "seen",
    "merged": "merged",
    "archive_watermark_ms": "awm",
    "archive_ids": "aids",
    "archive_started_ms": "astart",
    "archive_newest_ms": "amax",
    "archive_newest_ids": "anext",
    "search_started_ms": "sstart",
}
_INTS = {
    "full_started_ms",
    "newest_ms",
    "watermark_ms",
    "tie_id",
    "archive_watermark_ms",
    "archive_started_ms",
    "archive_newest_ms",
    "search_started_ms",
}
_ID_LISTS = {"at_watermark", "tie_seen", "archive_ids", "archive_newest_ids"}


def _typed(name: str, value: Any) -> Any:
    if name in _INTS:
        return int(value)
    if name in _ID_LISTS:
        if not isinstance(value, list):
            raise TypeError(f"{_KEYS[name]} is not a list")
        return tuple(str(v) for v in value)
    if name == "merged":
        if not isinstance(value, dict):
            raise TypeError("merged is not an object")
        return {str(k): str(v) for k, v in value.items()}
    if name == "strict":
        return bool(value)
    return str(value)


# -- starting a pull -----------------------------------------------------------------------


def start(previous: HubSpotCursor | None, *, full: bool, now_ms: int) -> HubSpotCursor:
    """The cursor a pull starts from: ``previous`` to resume it, else a new full pull (when
    ``full`` and not already in one) or an incremental pull over everything (no cursor, or
    an unfinished full pull's cursor when an incremental one is asked for).

    An incremental pull notes when its search begins (``now_ms``); one resumed keeps the
    time its first search began, so the watermark it hands on covers every search it made."""
    if full and (previous is None or previous.mode != "full"):
        return HubSpotCursor("full", full_started_ms=now_ms)
    if not full and (previous is None or previous.mode == "full"):
        return HubSpotCursor("range", search_started_ms=now_ms)
    assert previous is not None
    if previous.mode in ("range", "ties") and not previous.search_started_ms:
        return replace(previous, search_started_ms=now_ms)
    return previous


# -- full: the list API --------------------------------------------------------------------


def full_page(cursor: HubSpotCursor, stamps: Stamps, after: str | None) -> HubSpotCursor:
    """After one list page: the newest modification seen (and its ids), the next page."""
    newest, ids = _newest(cursor.newest_ms, cursor.at_watermark, stamps)
    return replace(cursor, newest_ms=newest, at_watermark=ids, after=after)


def _newest(newest: int, ids: tuple[str, ...], stamps: Stamps) -> tuple[int, tuple[str, ...]]:
    """The newest time of ``stamps`` and before (``newest``, held by ``ids``), and its ids."""
    held = list(ids)
    for ms, record_id in stamps:
        if ms > newest:
            newest, held = ms, [record_id]
        elif ms == newest:
            held.append(record_id)
    return newest, tuple(held)


def after_full(cursor: HubSpotCursor, skew_ms: int) -> HubSpotCursor:
    """The incremental cursor a finished full pull hands on: its newest modification as the
    watermark, but never later than the pull's start (less the clock skew), so a record
    changed while the pull listed pages is searched again; deletions from the start on."""
    begun = cursor.full_started_ms - skew_ms
    ids: tuple[str, ...]
    if cursor.newest_ms <= begun:
        watermark, ids = cursor.newest_ms, cursor.at_watermark
    else:
        watermark, ids = begun, ()
    return _range(watermark, ids, strict=False, archive_watermark=begun, archive_ids=())


def _range(
    watermark: int,
    ids: tuple[str, ...],
    *,
    strict: bool,
    archive_watermark: int,
    archive_ids: tuple[str, ...],
) -> HubSpotCursor:
    if len(ids) > NOT_IN_LIMIT:  # too many for NOT_IN: every one at the watermark was seen
        ids, strict = (), True
    return HubSpotCursor(
        "range",
        watermark_ms=watermark,
        at_watermark=ids,
        strict=strict,
        archive_watermark_ms=archive_watermark,
        archive_ids=archive_ids,
    )


# -- range and ties: the search ------------------------------------------------------------


def search_filters(cursor: HubSpotCursor, modified: str) -> tuple[list[dict[str, Any]], str]:
    """The search's filter groups for the cursor, and the property to sort by."""

    def on(prop: str, operator: str, value: int) -> dict[str, Any]:
        return {"propertyName": prop, "operator": operator, "value": str(value)}

    watermark = cursor.watermark_ms
    if cursor.mode == "ties":
        ties = [on(modified, "EQ", watermark), on("hs_object_id", "GT", cursor.tie_id)]
        return [{"filters": ties}], "hs_object_id"
    if cursor.strict:
        return [{"filters": [on(modified, "GT", watermark)]}], modified
    if cursor.at_watermark:
        not_yet = {"propertyName": "hs_object_id", "operator": "NOT_IN"}
        at = [on(modified, "EQ", watermark), {**not_yet, "values": list(cursor.at_watermark)}]
        return [{"filters": [on(modified, "GT", watermark)]}, {"filters": at}], modified
    return [{"filters": [on(modified, "GTE", max(watermark, 0))]}], modified


def merges_seen(cursor: HubSpotCursor, merged: Mapping[str, str]) -> HubSpotCursor:
    """Merged-away ids a search page named, kept for the archived walk that reports them."""
    return replace(cursor, merged={**cursor.merged, **merged}) if merged else cursor


def search_page(cursor: HubSpotCursor, stamps: Stamps, more: bool, now_ms: int) -> HubSpotCursor:
    """After one search page (``more``: another page follows)."""
    if cursor.mode == "ties":
        return _ties_page(cursor, stamps, more)
    if stamps:
        cursor = _range_page(cursor, stamps, more)
    return cursor if more else _archived_start(cursor, now_ms)


def _ties_page(cursor: HubSpotCursor, stamps: Stamps, more: bool) -> HubSpotCursor:
    """Walking one millisecond's records by id: on from the last; done, after it only."""
    if stamps:
        cursor = replace(cursor, tie_id=int(stamps[-1][1]))
    if more:
        return cursor
    return replace(cursor, mode="range", strict=True, at_watermark=(), tie_seen=())


def _range_page(cursor: HubSpotCursor, stamps: Stamps, more: bool) -> HubSpotCursor:
    """The last result's time is the watermark, with the ids returned at it (added to those
    of before when the watermark stayed); too many of them: walk that millisecond by id."""
    last_ms = stamps[-1][0]
    at_last = tuple(record_id for ms, record_id in stamps if ms == last_ms)
    stayed = last_ms == cursor.watermark_ms and not cursor.strict
    ids = cursor.at_watermark + at_last if stayed else at_last
    cursor = replace(cursor, watermark_ms=last_ms, at_watermark=ids, strict=False)
    if len(ids) > NOT_IN_LIMIT and more:
        return replace(cursor, mode="ties", tie_id=0, tie_seen=ids, at_watermark=())
    return cursor


def _archived_start(cursor: HubSpotCursor, now_ms: int) -> HubSpotCursor:
    return replace(
        cursor,
        mode="archived",
        after=None,
        archive_started_ms=now_ms,
        archive_newest_ms=cursor.archive_watermark_ms,
        archive_newest_ids=(),
    )


# -- archived: deletions -------------------------------------------------------------------


def archived_page(cursor: HubSpotCursor, stamps: Stamps, after: str | None) -> HubSpotCursor:
    """After one page of the archived list (``stamps``: the deletions it reported)."""
    newest, ids = _newest(cursor.archive_newest_ms, cursor.archive_newest_ids, stamps)
    return replace(cursor, archive_newest_ms=newest, archive_newest_ids=ids, after=after)


def after_archived(cursor: HubSpotCursor, skew_ms: int, lag_ms: int = 0) -> HubSpotCursor:
    """The next pull's cursor: the search's watermark (capped by :func:`search_cap`), and
    deletions from the newest seen on, but never later than this walk's start (less the
    clock skew)."""
    watermark, ids, strict = search_cap(cursor, skew_ms, lag_ms)
    cap = cursor.archive_started_ms - skew_ms
    newest = cursor.archive_newest_ms
    archive_ids: tuple[str, ...]
    if newest > cap:
        archive_watermark, archive_ids = cap, ()
    elif newest > cursor.archive_watermark_ms:
        archive_watermark, archive_ids = newest, cursor.archive_newest_ids
    else:
        archive_watermark = cursor.archive_watermark_ms
        archive_ids = cursor.archive_ids + cursor.archive_newest_ids
    return _range(
        watermark, ids, strict=strict, archive_watermark=archive_watermark, archive_ids=archive_ids
    )


def search_cap(
    cursor: HubSpotCursor, skew_ms: int, lag_ms: int
) -> tuple[int, tuple[str, ...], bool]:
    """The watermark the next pull searches from: (watermark, ids at it, strict).

    With a search lag (``lag_ms`` > 0), a record modified less than ``lag_ms`` before a
    search may be missing from its results, though a later one is there. Every record
    modified up to when this pull's first search was sent, on HubSpot's clock, less the lag,
    was in the index for each of its searches; on our clock that time is at least
    ``search_started_ms - skew_ms`` (our clock is at most ``skew_ms`` ahead). A watermark
    past that cap goes back to it, with no ids left out and not strict (``GTE``): the
    records from the cap on are read again. At the cap or before it, the watermark, its ids
    and ``strict`` stand: those records were all in the index. With no lag (an index that
    has every write at once) the watermark is not capped."""
    watermark, ids, strict = cursor.watermark_ms, cursor.at_watermark, cursor.strict
    # a pull resumed from a cursor stored before this field: the search had ended by the
    # archived walk's start, the best time known
    started = cursor.search_started_ms or cursor.archive_started_ms
    if lag_ms <= 0 or not started:
        return watermark, ids, strict
    cap = started - skew_ms - lag_ms
    if watermark > cap:
        return cap, (), False
    return watermark, ids, strict
