"""Oracle guards: bad prices, the jump band and its confirmation, the stale clock.

Every threshold case is worked by hand in the comments (prices relative to 100,000).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pmargin.errors import InvalidInput, ParamsError
from pmargin.feeds.base import MarketUpdate, make_update, payload_from_market
from pmargin.feeds.guards import (
    FeedStale,
    GuardParams,
    OracleGuard,
    check_prices,
    load_guard_params,
)
from pmargin.market import MarketSnapshot

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def params(**jump: Any) -> GuardParams:
    j = {"band": 0.10, "confirm_band": 0.02, "min_sources": 2, "hold_seconds": 300.0, **jump}
    return GuardParams.model_validate({"schema_version": 1, "stale": {"after_seconds": 60.0},
                                       "jump": j})


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def upd(index: float, source: str = "a", minutes: int = 0) -> MarketUpdate:
    m = MarketSnapshot(T0 + timedelta(minutes=minutes), {"BTC": index})
    return make_update(payload_from_market(m.to_dict()), source, market=m)


def guard(**jump: Any) -> tuple[OracleGuard, Clock]:
    c = Clock()
    g = OracleGuard(params(**jump), clock=c)
    first = upd(100_000.0)
    assert g.decide(first).accept
    g.accepted(first)
    return g, c


# ------------------------------------------------------------------ bad prices
def block(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"valuation_time": "2025-03-01T00:00:00Z", "mark_unit": "USD",
                         "index": {"BTC": 100_000.0},
                         "instruments": {"BTC-PERPETUAL": {"mark_price": 100_000.0,
                                                           "bid_price": 99_990.0,
                                                           "ask_price": 100_010.0}}}
    for k, v in over.items():
        if k == "index":
            b["index"] = v
        else:
            b["instruments"]["BTC-PERPETUAL"][k] = v
    return b


@pytest.mark.parametrize(("over", "field", "why"), [
    ({"index": {"BTC": math.nan}}, "market.index['BTC']", "is NaN"),
    ({"index": {"BTC": 0}}, "market.index['BTC']", "is zero"),
    ({"index": {"BTC": -1.0}}, "market.index['BTC']", "is negative"),
    ({"index": {"BTC": math.inf}}, "market.index['BTC']", "is infinite"),
    ({"mark_price": 0.0}, "market.instruments['BTC-PERPETUAL'].mark_price", "is zero"),
    ({"bid_price": -3.0}, "market.instruments['BTC-PERPETUAL'].bid_price", "is negative"),
    ({"ask_price": math.nan}, "market.instruments['BTC-PERPETUAL'].ask_price", "is NaN"),
    ({"bid_price": 100_020.0}, "market.instruments['BTC-PERPETUAL'].bid_price", "crossed"),
])
def test_bad_prices_are_refused_naming_the_field(over: dict[str, Any], field: str,
                                                 why: str) -> None:
    with pytest.raises(InvalidInput) as e:
        check_prices(block(**over))
    assert e.value.field == field
    assert why in e.value.reason


def test_a_good_market_and_the_wrapped_form_pass() -> None:
    check_prices(block())
    check_prices({"valuation_time": "2025-03-01T00:00:00Z", "market": block()})
    with pytest.raises(InvalidInput) as e:  # the wrapped form is checked too
        check_prices({"valuation_time": "x", "market": block(index={"BTC": 0})})
    assert e.value.field == "market.index['BTC']"
    # equal bid and ask are not crossed
    check_prices(block(bid_price=100_010.0))


# ------------------------------------------------------------------ jump band
def test_moves_within_the_band_apply_and_beyond_it_are_held() -> None:
    g, _ = guard()
    assert g.decide(upd(109_999.0)).accept            # +9.999 % <= 10 %
    assert g.decide(upd(90_001.0)).accept             # -9.999 %
    d = g.decide(upd(110_100.0))                      # +10.1 %
    assert not d.accept
    assert d.moves["BTC"] == pytest.approx(0.101)
    assert "+10.10%" in d.reason
    assert "band of 10%" in d.reason
    assert d.reference == {"BTC": 100_000.0}


def test_a_confirming_update_of_the_same_source_releases_the_jump() -> None:
    g, _ = guard()
    assert not g.decide(upd(115_000.0), key="k1").accept
    # the same request again (same idempotency key) is a retry, not a confirmation
    d = g.decide(upd(115_000.0), key="k1")
    assert not d.accept
    assert "retry" in d.reason
    # 118,000 is 2.6 % from the held 115,000 (> 2 %): held too
    assert not g.decide(upd(118_000.0, minutes=1), key="k2").accept
    # 117,000: 1.74 % from 115,000 and 0.85 % from 118,000: confirmed
    d = g.decide(upd(117_000.0, minutes=2), key="k3")
    assert d.accept
    assert "confirmed" in d.reason


def test_two_sources_that_agree_release_the_jump() -> None:
    g, _ = guard()
    assert not g.decide(upd(115_000.0, "a"), key="a1").accept
    # median of 115,000 and 116,000 is 115,500; both within 0.44 % of it
    d = g.decide(upd(116_000.0, "b"), key="b1")
    assert d.accept
    assert d.reference == {"BTC": 115_500.0}


def test_the_median_of_several_sources_decides() -> None:
    g, _ = guard()
    assert not g.decide(upd(120_000.0, "a"), key="a1").accept
    # a: 120,000, b: 135,000 -> median 127,500; each 5.9 % from it (> 2 %): held
    assert not g.decide(upd(135_000.0, "b"), key="b1").accept
    # c: 121,000 -> median of (120,000, 135,000, 121,000) = 121,000; a is 0.83 % from it,
    # c 0 %: two sources agree, c among them: applied
    d = g.decide(upd(121_000.0, "c"), key="c1")
    assert d.accept
    assert d.reference == {"BTC": 121_000.0}
    assert "2 of 3" in d.reason


def test_two_sources_that_disagree_stay_held() -> None:
    g2, _ = guard()
    assert not g2.decide(upd(120_000.0, "a"), key="a1").accept
    assert not g2.decide(upd(135_000.0, "b"), key="b1").accept
    # b again at 135,500: latest a 120,000, b 135,500 -> median 127,750; neither within 2 %
    assert not g2.decide(upd(135_500.0, "b"), key="b2").accept


def test_three_sources_needed_when_configured() -> None:
    g, _ = guard(min_sources=3)
    assert not g.decide(upd(115_000.0, "a"), key="a1").accept
    assert not g.decide(upd(115_500.0, "b"), key="b1").accept   # 2 agree, 3 needed
    assert g.decide(upd(115_200.0, "c"), key="c1").accept       # median 115,200: 3 agree


def test_a_held_update_expires() -> None:
    g, clock = guard()
    assert not g.decide(upd(115_000.0), key="k1").accept
    clock.t += 301.0  # hold_seconds = 300
    assert not g.decide(upd(115_100.0, minutes=1), key="k2").accept
    clock.t += 10.0   # the second one is still held: a third confirms it
    assert g.decide(upd(115_200.0, minutes=2), key="k3").accept


def test_an_accepted_update_becomes_the_reference_and_clears_holds() -> None:
    g, _ = guard()
    assert not g.decide(upd(115_000.0, "a"), key="a1").accept
    new = upd(105_000.0, "b")
    assert g.decide(new).accept    # +5 %
    g.accepted(new)
    # 115,000 is now 9.5 % from 105,000: within the band
    assert g.decide(upd(115_000.0, "a", minutes=1)).accept
    # and the old hold no longer confirms anything: 117,000 is 11.4 % from 105,000
    assert not g.decide(upd(117_000.0, "c", minutes=1), key="c1").accept


# ------------------------------------------------------------------ stale clock
def test_stale_after_the_configured_seconds() -> None:
    c = Clock()
    g = OracleGuard(params(), clock=c)
    s = g.status()
    assert s.stale
    assert s.age_s is None
    assert s.accepted_at is None
    u = upd(100_000.0, "feed-x", minutes=30)
    g.accepted(u)
    c.t += 60.0                     # after_seconds = 60: not yet
    s = g.status()
    assert not s.stale
    assert s.age_s == 60.0
    assert s.as_of == "2025-03-01T00:30:00Z"
    assert s.source == "feed-x"
    assert s.digest == u.digest
    c.t += 0.5
    s = g.status()
    assert s.stale
    assert s.age_s == 60.5
    exc = FeedStale(s, "a withdrawal")
    body = exc.body()
    assert body["error"] == "market_stale"
    assert body["field"] == "market"
    assert body["market"]["stale"] is True
    assert body["market"]["age_s"] == 60.5
    assert "stale" in body["reason"]
    assert s.accepted_at in body["reason"]
    assert "60.5 s ago" in body["reason"]


def test_restore_from_the_log() -> None:
    c = Clock()
    g = OracleGuard(params(), clock=c)
    at = datetime.fromtimestamp(c.t - 100.0, UTC)
    g.restore({"BTC": 100_000.0}, at, T0, "feed-x", "ab" * 32)
    s = g.status()
    assert s.stale
    assert s.age_s == pytest.approx(100.0)
    assert s.source == "feed-x"
    assert not g.decide(upd(111_000.0)).accept  # the restored index is the reference


# ------------------------------------------------------------------ parameters
def test_guard_parameters_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = load_guard_params()
    assert p.jump.band == 0.10
    assert p.stale.after_seconds > 0
    f = tmp_path / "g.toml"
    f.write_text("schema_version = 1\n[stale]\nafter_seconds = 5\n[jump]\nband = 0.2\n"
                 "confirm_band = 0.05\nmin_sources = 3\nhold_seconds = 10\n")
    monkeypatch.setenv("PMARGIN_FEED_GUARDS", str(f))
    q = load_guard_params()
    assert (q.stale.after_seconds, q.jump.band, q.jump.min_sources) == (5, 0.2, 3)
    f.write_text("schema_version = 1\n[stale]\nafter_second = 5\n[jump]\nband = 0.2\n"
                 "confirm_band = 0.05\nmin_sources = 3\nhold_seconds = 10\n")
    with pytest.raises(ParamsError) as e:
        load_guard_params(f)
    assert "after_second" in str(e.value)
    f.write_text("schema_version = 1\n[stale]\nafter_seconds = 5\n[jump]\nband = 0.02\n"
                 "confirm_band = 0.05\nmin_sources = 2\nhold_seconds = 10\n")
    with pytest.raises(ParamsError) as e:
        load_guard_params(f)
    assert "confirm_band" in str(e.value)


def test_params_validate_knows_the_guards_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import pmargin
    from pmargin.cli import app

    shipped = Path(pmargin.__file__).parent / "feeds" / "guards.toml"
    r = CliRunner().invoke(app, ["params", "validate", "--kind", "guards", str(shipped)])
    assert r.exit_code == 0
    assert "(guards)" in r.output
    bad = tmp_path / "guards.toml"
    bad.write_text(shipped.read_text().replace("band = 0.10", "band = 1.5"))
    r = CliRunner().invoke(app, ["params", "validate", str(bad)])  # kind from the file name
    assert r.exit_code == 2
    assert "jump.band" in r.output
