"""`make invoke ... NOW=1` restamps the sample event; a time with fractional seconds (allowed by
RFC 3339, written by hand or by other tools) crashed it (issue 23)."""

from __future__ import annotations

import datetime

from localeks.invoke import restamp

NOW = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)


def test_a_time_with_fractional_seconds_is_restamped() -> None:
    event = {"time": "2026-11-27T10:00:00.123Z", "detail": {"instance-termination-time": "2026-11-27T10:02:00.5Z"}}
    restamp(event, NOW)
    assert event["time"] == "2026-12-03T12:00:00Z"
    assert event["detail"]["instance-termination-time"] == "2026-12-03T12:02:00Z"


def test_the_times_of_the_detail_keep_their_distance_from_the_event() -> None:
    event = {
        "time": "2026-11-27T10:00:00Z",
        "detail": {"startTime": "Fri, 27 Nov 2026 13:00:00 GMT", "endTime": "Fri, 27 Nov 2026 15:00:00 GMT"},
    }
    restamp(event, NOW)
    assert event["time"] == "2026-12-03T12:00:00Z"
    assert event["detail"]["startTime"] == "Thu, 03 Dec 2026 15:00:00 GMT"
    assert event["detail"]["endTime"] == "Thu, 03 Dec 2026 17:00:00 GMT"
