"""The arithmetic of `cdc status`: pending events per topic, seconds behind."""

from __future__ import annotations

import datetime as dt

from cdc.status import pending_events, seconds_behind

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def test_pending_events_count_every_partition_from_the_stored_offset() -> None:
    marks = {0: (0, 100), 1: (0, 50), 2: (10, 10)}
    assert pending_events(marks, {0: 100, 1: 20}) == 30  # partition 1 only
    assert pending_events(marks, {}) == 150  # nothing stored: from the low watermark
    # retention moved the low watermark past the stored offset: what's left to read
    assert pending_events({0: (80, 100)}, {0: 40}) == 20
    # an offset stored beyond the high watermark (a recreated topic) counts 0, never < 0
    assert pending_events({0: (0, 5)}, {0: 9}) == 0


def test_seconds_behind() -> None:
    assert seconds_behind(0, None, NOW) == 0.0
    assert seconds_behind(5, None, NOW) is None  # nothing applied yet
    assert seconds_behind(5, NOW - dt.timedelta(seconds=42), NOW) == 42.0
    assert seconds_behind(None, NOW - dt.timedelta(seconds=1), NOW) == 1.0  # no topic yet
    assert seconds_behind(3, NOW + dt.timedelta(seconds=5), NOW) == 0.0  # clock skew
