from datetime import UTC, datetime, timedelta, timezone

import pytest

from pmargin.conventions import SECONDS_PER_YEAR, ensure_utc, parse_time, year_fraction
from pmargin.errors import InvalidInput


def test_year_fraction_is_act_365_in_seconds():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert year_fraction(t0, t0 + timedelta(days=365)) == 1.0
    assert year_fraction(t0, t0 + timedelta(seconds=1)) == 1.0 / SECONDS_PER_YEAR
    assert year_fraction(t0 + timedelta(days=1), t0) < 0


def test_parse_time_accepts_z_and_converts_offsets_to_utc():
    assert parse_time("2024-06-17T10:22:20.501Z") == datetime(2024, 6, 17, 10, 22, 20, 501000,
                                                              tzinfo=UTC)
    t = parse_time("2024-06-17T12:00:00+02:00")
    assert t == datetime(2024, 6, 17, 10, tzinfo=UTC)
    assert t.tzinfo == UTC


@pytest.mark.parametrize("text", ["2024-06-17T10:22:20", "yesterday", ""])
def test_naive_or_malformed_times_are_rejected_naming_the_field(text):
    with pytest.raises(InvalidInput, match="valuation_time"):
        parse_time(text)


def test_ensure_utc_rejects_naive():
    with pytest.raises(InvalidInput, match="timezone"):
        ensure_utc(datetime(2026, 1, 1))  # noqa: DTZ001
    assert ensure_utc(datetime(2026, 1, 1, 3, tzinfo=timezone(timedelta(hours=3)))).hour == 0
