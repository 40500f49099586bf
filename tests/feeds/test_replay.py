"""The replay feed and client: times, pacing, statuses, latency figures (no server here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from pmargin.errors import InvalidInput
from pmargin.feeds.replay import (
    ReplayFeed,
    parse_speed,
    parse_when,
    replay_into,
    replay_times,
)
from pmargin.market import MarketSnapshot

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_one_year_of_hours_is_8760_updates() -> None:
    ts = replay_times(parse_when("2025-01-01", "--from"),
                      parse_when("2025-12-31", "--to", end_of_day=True))
    assert len(ts) == 365 * 24
    assert ts[0] == T0
    assert ts[-1] == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert len(replay_times(T0, T0)) == 1
    assert len(replay_times(T0, T0 + timedelta(hours=5), timedelta(hours=2))) == 3  # 0, 2, 4


def test_bad_times_and_speeds() -> None:
    for text in ("2025-13-01", "yesterday", "2025-01-01T00:00:00"):
        with pytest.raises(InvalidInput) as e:
            parse_when(text, "--from")
        assert e.value.field == "--from"
    with pytest.raises(InvalidInput) as e:
        replay_times(T0, T0 - timedelta(hours=1))
    assert e.value.field == "to"
    assert parse_speed("max") is None
    assert parse_speed("3600") == 3600.0
    for bad in ("0", "-5", "nan", "inf", "fast"):
        with pytest.raises(InvalidInput) as e:
            parse_speed(bad)
        assert e.value.field == "--speed"
    with pytest.raises(InvalidInput):
        ReplayFeed([T0, T0], lambda t: MarketSnapshot(t, {"BTC": 1.0}))


class FakeClock:
    """Time advances only when slept or when the fake server answers."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.text = "{}"

    def json(self) -> dict[str, Any]:
        return {"status": self.status_code}


class FakeClient:
    """Answers with the given statuses, each taking ``cost`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, statuses: list[int], cost: list[float]) -> None:
        self.clock, self.statuses, self.cost = clock, list(statuses), list(cost)
        self.posted: list[dict[str, str]] = []

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> FakeResponse:
        self.posted.append(headers)
        self.clock.t += self.cost.pop(0)
        return FakeResponse(self.statuses.pop(0))


def feed(n: int) -> ReplayFeed:
    return ReplayFeed(replay_times(T0, T0 + timedelta(hours=n - 1)),
                      lambda t: MarketSnapshot(t, {"BTC": 90_000.0 + t.hour}), "replay:test")


def test_pacing_at_3600x_sends_one_hour_of_history_per_second() -> None:
    clock = FakeClock()
    client = FakeClient(clock, [200, 200, 200, 200], [0.1, 0.3, 1.5, 0.2])
    res = replay_into(feed(4), "http://x", "k", 3600.0, client=client, clock=clock,
                      sleep=clock.sleep)
    # sends due at 0, 1, 2, 3 s; answers take 0.1, 0.3, 1.5, 0.2 s: waits 0.9, 0.7, then the
    # third answer ends at 3.5 s (late: no wait) and the fourth is sent at once
    assert clock.sleeps == pytest.approx([0.9, 0.7])
    assert res.wall_s == pytest.approx(3.7)
    s = res.summary()
    assert s["accepted"] == 4
    assert s["held"] == 0
    assert s["refused"] == 0
    assert s["accepted_per_s"] == pytest.approx(4 / 3.7, abs=0.01)
    # percentiles by hand: sorted 100, 200, 300, 1500 ms; p50 = 250, p99 = 300 + 0.97 * 1200
    assert s["latency_p50_ms"] == pytest.approx(250.0)
    assert s["latency_p99_ms"] == pytest.approx(1464.0)
    h = client.posted[0]
    assert h["X-Feed-Source"] == "replay:test"
    assert h["Authorization"] == "Bearer k"
    assert h["Idempotency-Key"].startswith("replay:test:2025-01-01T00:00:00+00:00:")


def test_max_speed_never_waits_and_counts_holds_and_refusals() -> None:
    clock = FakeClock()
    client = FakeClient(clock, [200, 202, 422, 200], [0.05] * 4)
    res = replay_into(feed(4), "http://x", "k", None, client=client, clock=clock,
                      sleep=clock.sleep)
    assert clock.sleeps == []
    s = res.summary()
    assert (s["sent"], s["accepted"], s["held"], s["refused"]) == (4, 2, 1, 1)
    assert len(res.latencies_s) == 2
    assert np.allclose(res.latencies_s, 0.05)
    assert [r["status"] for r in s["refusals"]] == [202, 422]


def test_an_unauthorised_key_or_a_server_error_stops_the_replay() -> None:
    for status, field in ((401, "--key"), (500, "--url")):
        clock = FakeClock()
        client = FakeClient(clock, [200, status, 200], [0.01] * 3)
        with pytest.raises(InvalidInput) as e:
            replay_into(feed(3), "http://x", "k", None, client=client, clock=clock,
                        sleep=clock.sleep)
        assert e.value.field == field
        assert len(client.posted) == 2


def test_cli_refuses_bad_options_with_exit_2() -> None:
    from typer.testing import CliRunner

    from pmargin.cli import app

    r = CliRunner().invoke(app, ["replay", "--url", "http://127.0.0.1:9", "--key", "k",
                                 "--speed", "fast"])
    assert r.exit_code == 2
    assert "--speed" in r.output
    r = CliRunner().invoke(app, ["replay", "--url", "http://127.0.0.1:9", "--key", "k",
                                 "--from", "2025-02-01", "--to", "2025-01-01"])
    assert r.exit_code == 2
    assert "to" in r.output


@pytest.mark.data
def test_history_markets_list_the_held_instruments_and_build_the_same_in_a_worker() -> None:
    from pmargin.feeds.replay import HistoryBuilder

    pytest.importorskip("pmargin.analytics.history")
    from pmargin.demo import find_shared

    if find_shared() is None:
        pytest.skip("../shared/data is absent")
    held = ["BTC-27MAR26-100000-C", "BTC-3JAN25-90000-P"]  # the second expires on day 3
    b = HistoryBuilder("BTC", held)
    times = replay_times(T0, T0 + timedelta(days=3), timedelta(hours=36))  # 0 h, 36 h, 72 h
    here = list(ReplayFeed(times, b, "replay:t"))
    there = list(ReplayFeed(times, b, "replay:t", workers=1))
    assert [u.digest for u in here] == [u.digest for u in there]
    assert all(u.market.is_listed(held[0]) for u in here)
    # 2025-01-03 08:00 expiry: listed at 00:00 and 12:00 of day 2, not at 00:00 of day 4
    assert [u.market.is_listed(held[1]) for u in here] == [True, True, False]
    assert here[0].market.source.startswith("history-built BTC")
    assert here[0].market.valuation_time == T0
