"""The HubSpot cursor: a typed value with a JSON round-trip (reading the dict cursors stored
before it was typed), and each transition a pure function, tested without the API."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import ConfigError
from connectors.hubspot import cursor as cursors
from connectors.hubspot.cursor import NOT_IN_LIMIT, HubSpotCursor

ids = st.lists(st.integers(1, 10**12).map(str), max_size=5).map(tuple)
cursor_values = st.builds(
    HubSpotCursor,
    mode=st.sampled_from(cursors.MODES),
    after=st.none() | st.text(min_size=1, max_size=10),
    full_started_ms=st.integers(0, 2**45),
    newest_ms=st.integers(-1, 2**45),
    watermark_ms=st.integers(-1, 2**45),
    at_watermark=ids,
    strict=st.booleans(),
    tie_id=st.integers(0, 10**12),
    tie_seen=ids,
    merged=st.dictionaries(st.integers(1, 999).map(str), st.integers(1, 999).map(str)),
    archive_watermark_ms=st.integers(0, 2**45),
    archive_ids=ids,
    archive_started_ms=st.integers(0, 2**45),
    archive_newest_ms=st.integers(0, 2**45),
    archive_newest_ids=ids,
    search_started_ms=st.integers(0, 2**45),
)


@given(cursor_values)
def test_json_round_trip(value: HubSpotCursor) -> None:
    assert HubSpotCursor.from_json(value.to_json()) == value


def test_a_dict_cursor_stored_before_reads_back() -> None:
    # as the connector stored them: an incremental cursor, an archived walk mid-way, ties
    stored = {"mode": "range", "wm": 1700000000123, "ids": ["7", "9"], "strict": False,
              "awm": 1699990000000, "aids": ["3"]}  # fmt: skip
    read = HubSpotCursor.from_json(json.dumps(stored))
    assert read == HubSpotCursor(
        "range",
        watermark_ms=1700000000123,
        at_watermark=("7", "9"),
        archive_watermark_ms=1699990000000,
        archive_ids=("3",),
    )
    assert json.loads(read.to_json()) == {k: v for k, v in stored.items() if v is not False}
    walking = {"mode": "archived", "wm": 5, "ids": [], "strict": True, "awm": 2, "aids": [],
               "merged": {"11": "12"}, "after": "200", "astart": 9, "amax": 4, "anext": ["8"],
               "seen": [], "tie_id": 31}  # fmt: skip
    read = HubSpotCursor.from_json(json.dumps(walking))
    assert (read.mode, read.after, read.merged, read.archive_newest_ids) == (
        "archived", "200", {"11": "12"}, ("8",)
    )  # fmt: skip
    full = {"mode": "full", "after": None, "start": 100, "max": -1, "ids": []}
    assert HubSpotCursor.from_json(json.dumps(full)) == HubSpotCursor("full", full_started_ms=100)


NOT_CURSORS = [
    "",
    "[]",
    '{"wm": 1}',
    '{"mode": "sideways"}',
    '{"mode": "range", "wm": "soon"}',
    '{"mode": "range", "ids": 3}',
]


@pytest.mark.parametrize("text", NOT_CURSORS)
def test_what_is_not_a_cursor_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigError, match="not a HubSpot cursor"):
        HubSpotCursor.from_json(text)


def test_start_resumes_or_begins() -> None:
    walking = HubSpotCursor("ties", watermark_ms=5, tie_id=9, search_started_ms=3)
    assert cursors.start(walking, full=False, now_ms=4) is walking
    assert cursors.start(None, full=False, now_ms=1) == HubSpotCursor("range", search_started_ms=1)
    unfinished_full = HubSpotCursor("full", after="x", full_started_ms=1)
    assert cursors.start(unfinished_full, full=False, now_ms=2) == HubSpotCursor(
        "range", search_started_ms=2
    )
    # the last pull's cursor starts a new search (and so does a walk stored before the field)
    handed_on = HubSpotCursor("range", watermark_ms=5, at_watermark=("1",))
    assert cursors.start(handed_on, full=False, now_ms=7) == replace(handed_on, search_started_ms=7)
    assert cursors.start(replace(walking, search_started_ms=0), full=False, now_ms=8) == (
        replace(walking, search_started_ms=8)
    )
    assert cursors.start(unfinished_full, full=True, now_ms=2) is unfinished_full
    assert cursors.start(walking, full=True, now_ms=2) == HubSpotCursor("full", full_started_ms=2)


def test_a_full_pull_hands_on_a_watermark_no_later_than_its_start() -> None:
    at = HubSpotCursor("full", full_started_ms=10_000)
    at = cursors.full_page(at, [(5_000, "1"), (7_000, "2"), (7_000, "3")], "p2")
    assert (at.newest_ms, at.at_watermark, at.after) == (7_000, ("2", "3"), "p2")
    at = cursors.full_page(at, [(6_000, "4")], None)
    assert cursors.after_full(at, skew_ms=1_000) == HubSpotCursor(
        "range", watermark_ms=7_000, at_watermark=("2", "3"), archive_watermark_ms=9_000
    )
    # a record changed while the pull ran (after its start, less the skew): searched again
    late = cursors.full_page(at, [(9_500, "5")], None)
    assert cursors.after_full(late, skew_ms=1_000) == HubSpotCursor(
        "range", watermark_ms=9_000, archive_watermark_ms=9_000
    )


def test_the_search_keeps_the_ids_at_its_watermark_and_walks_a_crowded_millisecond() -> None:
    at = HubSpotCursor("range", watermark_ms=100, at_watermark=("1",))
    groups, sort = cursors.search_filters(at, "hs_lastmodifieddate")
    assert sort == "hs_lastmodifieddate" and len(groups) == 2
    assert groups[1]["filters"][1] == {
        "propertyName": "hs_object_id", "operator": "NOT_IN", "values": ["1"]
    }  # fmt: skip
    # the watermark stays: its ids add up
    at = cursors.search_page(at, [(100, "2")], more=True, now_ms=0)
    assert at.at_watermark == ("1", "2")
    # more than NOT_IN can hold at one millisecond: walk it by id
    crowd = [(200, str(i)) for i in range(1, NOT_IN_LIMIT + 2)]
    at = cursors.search_page(at, crowd, more=True, now_ms=0)
    assert (at.mode, at.watermark_ms, at.tie_id, len(at.tie_seen)) == ("ties", 200, 0, 101)
    groups, sort = cursors.search_filters(at, "hs_lastmodifieddate")
    assert sort == "hs_object_id"
    at = cursors.search_page(at, [(200, "500"), (200, "510")], more=False, now_ms=0)
    assert (at.mode, at.strict, at.tie_id, at.tie_seen) == ("range", True, 510, ())
    groups, _ = cursors.search_filters(at, "hs_lastmodifieddate")
    assert groups == [{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": "200"}
    ]}]  # fmt: skip
    # the last search page: on to the archived list, from the archive watermark
    at = replace(at, archive_watermark_ms=50, archive_ids=("x",))
    at = cursors.search_page(at, [], more=False, now_ms=9_000)
    assert (at.mode, at.after, at.archive_started_ms, at.archive_newest_ms) == (
        "archived", None, 9_000, 50
    )  # fmt: skip


def test_the_archived_walk_reports_each_deletion_once() -> None:
    at = HubSpotCursor(
        "archived", watermark_ms=7, archive_watermark_ms=100, archive_ids=("1",),
        archive_started_ms=10_000, archive_newest_ms=100,
    )  # fmt: skip
    assert at.archived_already(99, "9") and at.archived_already(100, "1")
    assert not at.archived_already(100, "2") and not at.archived_already(101, "1")
    at = cursors.archived_page(at, [(100, "2"), (300, "3"), (300, "4")], "next")
    assert (at.archive_newest_ms, at.archive_newest_ids, at.after) == (300, ("3", "4"), "next")
    nxt = cursors.after_archived(cursors.archived_page(at, [], None), skew_ms=1_000)
    assert nxt == HubSpotCursor(
        "range", watermark_ms=7, archive_watermark_ms=300, archive_ids=("3", "4")
    )
    # nothing newer: the ids at the same watermark add up
    same = HubSpotCursor("archived", archive_watermark_ms=100, archive_ids=("1",),
                         archive_started_ms=10_000, archive_newest_ms=100)  # fmt: skip
    same = cursors.archived_page(same, [(100, "2")], None)
    assert cursors.after_archived(same, 0).archive_ids == ("1", "2")
    # a deletion stamped after the walk began (our clock, less the skew): from there again
    late = cursors.archived_page(same, [(9_500, "5")], None)
    assert cursors.after_archived(late, 1_000).archive_watermark_ms == 9_000


# -- the search index lags behind writes: the watermark handed on is capped ------------------

LAG = 10_000


def _searched(watermark: int, ids: tuple[str, ...] = (), *, strict: bool = False) -> HubSpotCursor:
    """A pull whose search began at 100,000 and ended at ``watermark``, on to the archived
    walk (started at 101,000) with nothing archived."""
    at = HubSpotCursor(
        "range", watermark_ms=watermark, at_watermark=ids, strict=strict, search_started_ms=100_000
    )
    return cursors.archived_page(cursors.search_page(at, [], False, 101_000), [], None)


def test_a_watermark_past_the_search_start_less_skew_and_lag_goes_back_to_it() -> None:
    # the search began at 100,000 (our clock, up to 1,000 ahead of HubSpot's): a record
    # modified after 89,000 may not have been in the index yet, though a later one was
    nxt = cursors.after_archived(_searched(95_000, ("7", "8")), skew_ms=1_000, lag_ms=LAG)
    assert (nxt.watermark_ms, nxt.at_watermark, nxt.strict) == (89_000, (), False)
    assert nxt.search_started_ms == 0  # the next pull notes its own start
    # from the cap on, every record again, with no upper bound
    groups, _ = cursors.search_filters(nxt, "hs_lastmodifieddate")
    assert groups == [{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "89000"}
    ]}]  # fmt: skip
    # a strict watermark past the cap: not strict at the cap (records at it were not all read)
    strict = cursors.after_archived(_searched(95_000, strict=True), skew_ms=1_000, lag_ms=LAG)
    assert (strict.watermark_ms, strict.at_watermark, strict.strict) == (89_000, (), False)


def test_a_watermark_at_or_before_the_cap_stands_with_its_ids() -> None:
    # every record modified up to the cap was in the index: the ids read at it stand
    for watermark in (89_000, 50_000):
        nxt = cursors.after_archived(_searched(watermark, ("7",)), skew_ms=1_000, lag_ms=LAG)
        assert (nxt.watermark_ms, nxt.at_watermark, nxt.strict) == (watermark, ("7",), False)
    nxt = cursors.after_archived(_searched(89_000, strict=True), skew_ms=1_000, lag_ms=LAG)
    assert (nxt.watermark_ms, nxt.at_watermark, nxt.strict) == (89_000, (), True)
    # no lag: an index with every write at once, the watermark as read
    nxt = cursors.after_archived(_searched(99_999, ("7",)), skew_ms=1_000, lag_ms=0)
    assert (nxt.watermark_ms, nxt.at_watermark) == (99_999, ("7",))


def test_the_cap_counts_from_the_first_search_of_a_resumed_pull() -> None:
    """Pages, a crowded millisecond walked by id, a resume: the cap is the first search's."""
    at = cursors.start(HubSpotCursor("range", watermark_ms=80_000), full=False, now_ms=100_000)
    at = cursors.search_page(at, [(90_000, "1"), (95_000, "2")], True, 100_500)
    crowd = [(96_000, str(i)) for i in range(10, 10 + NOT_IN_LIMIT + 1)]
    at = cursors.search_page(at, crowd, True, 101_000)
    assert at.mode == "ties"
    stored = HubSpotCursor.from_json(at.to_json())  # the worker dies; the next one resumes
    at = cursors.start(stored, full=False, now_ms=200_000)
    assert at.search_started_ms == 100_000
    at = cursors.search_page(at, [(96_000, "500")], False, 200_100)
    assert (at.mode, at.watermark_ms, at.strict) == ("range", 96_000, True)
    at = cursors.search_page(at, [(97_000, "501")], False, 200_200)
    at = cursors.archived_page(at, [], None)
    nxt = cursors.after_archived(at, skew_ms=0, lag_ms=LAG)
    assert (nxt.watermark_ms, nxt.at_watermark, nxt.strict) == (90_000, (), False)


def test_an_archived_walk_stored_before_the_start_was_noted_caps_by_its_own_start() -> None:
    stored = {"mode": "archived", "wm": 95_000, "ids": ["7"], "astart": 100_000, "amax": 0}
    nxt = cursors.after_archived(
        HubSpotCursor.from_json(json.dumps(stored)), skew_ms=1_000, lag_ms=LAG
    )
    assert (nxt.watermark_ms, nxt.at_watermark, nxt.strict) == (89_000, (), False)


@given(cursor_values, st.integers(0, 60_000), st.integers(0, 5_000))
def test_the_next_watermark_never_passes_the_cap(
    value: HubSpotCursor, lag_ms: int, skew_ms: int
) -> None:
    at = replace(value, mode="archived", after=None)
    nxt = cursors.after_archived(at, skew_ms=skew_ms, lag_ms=lag_ms)
    started = at.search_started_ms or at.archive_started_ms
    if lag_ms and started:
        assert nxt.watermark_ms <= max(started - skew_ms - lag_ms, at.watermark_ms)
        assert nxt.watermark_ms <= started - skew_ms - lag_ms or nxt.watermark_ms == (
            at.watermark_ms
        )
    if nxt.watermark_ms != at.watermark_ms:  # capped: nothing at the cap is left out
        assert nxt.at_watermark == () and not nxt.strict
    else:
        assert nxt.strict == (at.strict or len(at.at_watermark) > NOT_IN_LIMIT)
    assert nxt.search_started_ms == 0
