"""Cron expressions of schedules: 5 fields, or 6 with seconds last; anything else is refused with an example."""

from __future__ import annotations

import datetime as dt

import pytest

from loopml.errors import InvalidInput
from loopml.executor.schedules import check_cron, next_time

NEW_YEAR = dt.datetime(2025, 1, 1, 10, 0, 5, tzinfo=dt.timezone.utc)  # a Wednesday


@pytest.mark.parametrize(
    "cron, expected",
    [
        ("0 3 * * *", dt.datetime(2025, 1, 2, 3, 0, tzinfo=dt.timezone.utc)),
        ("*/5 * * * *", dt.datetime(2025, 1, 1, 10, 5, tzinfo=dt.timezone.utc)),
        ("30 9 * * mon-fri", dt.datetime(2025, 1, 2, 9, 30, tzinfo=dt.timezone.utc)),
        ("0 0 1 * *", dt.datetime(2025, 2, 1, 0, 0, tzinfo=dt.timezone.utc)),
        ("* * * * * */30", dt.datetime(2025, 1, 1, 10, 0, 30, tzinfo=dt.timezone.utc)),
        ("0 12 * * * 15", dt.datetime(2025, 1, 1, 12, 0, 15, tzinfo=dt.timezone.utc)),
    ],
    ids=["daily-at-3", "every-5-minutes", "weekdays-by-name", "monthly", "seconds-every-30", "seconds-fixed"],
)
def test_valid_expression_is_accepted_and_gives_next_time(cron: str, expected: dt.datetime) -> None:
    assert check_cron(cron) == cron
    assert next_time(cron, NEW_YEAR) == expected


@pytest.mark.parametrize(
    "cron",
    ["* * * *", "garbage", "* * * * * * *", "0 0 1 1 * 0 2030", "61 * * * *", "0 25 * * *", "", "@daily"],
    ids=["4-fields", "garbage", "7-fields", "7-fields-with-year", "minute-out-of-range", "hour-out-of-range",
         "empty", "macro"],
)
def test_invalid_expression_is_refused_with_an_example(cron: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_cron(cron)

    assert caught.value.message.startswith(f"invalid cron expression {cron!r}: ")
    assert "e.g. '0 3 * * *'" in caught.value.message
    assert "e.g. '* * * * * */30'" in caught.value.message
    assert caught.value.details == {"field": "cron"}
