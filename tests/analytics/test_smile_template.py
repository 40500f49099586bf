"""Smile template: recovered from a generated chain; accuracy on the real Deribit chains."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmargin.analytics.history import market_at
from pmargin.analytics.history_params import load_history_params
from pmargin.analytics.smile_template import (
    SmileTemplate,
    chain_files,
    chain_observations,
    fit_template,
    load_template,
)
from pmargin.conventions import year_fraction
from pmargin.errors import InvalidInput
from tests.conftest import shared_path

P = load_history_params()
T = np.array(P.template.term_nodes_days)
X = np.array(P.template.x_nodes)
TRUE_TERM = 1.0 + 0.04 * np.log(T / 30.0)
TRUE_SHAPE = 1.0 + 0.08 * X * X - 0.06 * X


def _write_chain(path: Path, when: datetime, atm30: float, forward: float) -> None:
    rows = []
    for n, days in enumerate(T):
        expiry = when + timedelta(days=float(days))
        tau = year_fraction(when, expiry)
        for x in np.linspace(-2.9, 2.9, 59):
            k = forward * math.exp(x * math.sqrt(tau))
            iv = atm30 * TRUE_TERM[n] * float(np.interp(x, X, TRUE_SHAPE))
            rows.append({
                "timestamp": when.isoformat(), "underlying": forward,
                "option_type": "call" if k >= forward else "put", "strike": k,
                "expiry_datetime": expiry.isoformat(), "implied_volatility": iv,
                "currency": "BTC", "index_price": forward})
    pd.DataFrame(rows).to_csv(path, index=False)


def test_fit_recovers_a_known_template(tmp_path):
    files = []
    for i, (atm, fwd) in enumerate([(0.5, 60_000.0), (0.8, 30_000.0), (0.35, 90_000.0)]):
        f = tmp_path / f"chain{i}.csv"
        _write_chain(f, datetime(2026, 1, 1 + i, 9, tzinfo=UTC), atm, fwd)
        files.append(f)
    tpl = fit_template("BTC", files)
    assert tpl.sources == ("chain0.csv", "chain1.csv", "chain2.csv")
    np.testing.assert_allclose(tpl.term_ratio, TRUE_TERM, atol=2e-3)
    np.testing.assert_allclose(tpl.shape, np.tile(TRUE_SHAPE, (T.size, 1)), atol=1e-2)
    obs = chain_observations(files[1], "BTC")
    assert obs["atm30"].iloc[0] == pytest.approx(0.8, rel=1e-9)
    # the template evaluated at each option reproduces the generated IVs
    model = tpl.vols(obs["atm30"].to_numpy(), obs["tau"].to_numpy(), obs["k"].to_numpy())
    assert float(np.sqrt(np.mean((model - obs["iv"]) ** 2))) < 0.01


def test_template_invariants_are_checked():
    t, x = T, X
    with pytest.raises(InvalidInput):
        SmileTemplate("BTC", t, np.full(t.size, 1.1), x, np.ones((t.size, x.size)))
    bad = np.ones((t.size, x.size))
    bad[0, 0] = -1.0
    with pytest.raises(InvalidInput):
        SmileTemplate("BTC", t, np.ones(t.size), x, bad)
    with pytest.raises(InvalidInput):
        SmileTemplate("BTC", t[1:], np.ones(t.size - 1), x, np.ones((t.size, x.size)))
    flat = SmileTemplate.flat("btc")
    assert flat.asset == "BTC"
    assert np.all(flat.vols(0.6, np.array([0.01, 0.5, 2.0]), np.array([-1.0, 0.0, 0.7])) == 0.6)


def test_no_usable_options(tmp_path):
    f = tmp_path / "c.csv"
    _write_chain(f, datetime(2026, 1, 1, tzinfo=UTC), 0.5, 100.0)
    with pytest.raises(InvalidInput) as e:
        fit_template("ETH", [f])
    assert e.value.field == "chains"


# ------------------------------------------------------------------ real data


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a * a)))


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("asset", ["BTC", "ETH"])
def test_template_against_the_chains_it_was_fitted_on(asset):
    shared_path("data", "deribit")
    tpl = load_template(asset)
    obs = pd.concat([chain_observations(f, asset) for f in chain_files()], ignore_index=True)
    assert tpl.n_options == int((obs["tau"] >= P.template.min_tau_days / 365).sum())
    model = tpl.vols(obs["atm30"].to_numpy(), obs["tau"].to_numpy(), obs["k"].to_numpy())
    err = model - obs["iv"].to_numpy()
    x = obs["k"] / np.sqrt(obs["tau"])
    core = ((x.abs() <= 1.5) & (obs["tau"] >= 7 / 365)).to_numpy()
    flat = (obs["atm30"] - obs["iv"]).to_numpy()
    # the shape explains most of what one ATM number cannot (docs/history-markets.md)
    assert _rms(err[core]) < 0.8 * _rms(flat[core])
    assert _rms(err[core]) < 0.08
    assert float(np.median(np.abs(err))) < 0.05


@pytest.mark.data
@pytest.mark.slow
def test_history_market_against_a_real_chain():
    """A history-built market at a snapshot's hour, against that snapshot (DVOL, not its ATM)."""
    shared_path("data", "deribit")
    f = next(p for p in chain_files() if "20260114T092233Z" in p.name)
    obs = chain_observations(f, "BTC")
    when = obs["time"].iloc[0].to_pydatetime()
    m = market_at("BTC", when)
    # history index (hourly close) vs the chain's Deribit index: same market, within 1 %
    assert m.index_price("BTC") == pytest.approx(obs["index_price"].iloc[0], rel=0.01)
    surf = m.vol_surface("BTC")
    s = m.index_price("BTC")
    vols = surf.vol(obs["tau"].to_numpy(), s * np.exp(obs["k"].to_numpy()), s)
    core = ((obs["k"] / np.sqrt(obs["tau"])).abs() <= 1.5).to_numpy() & (obs["tau"] >= 7 / 365)
    assert _rms((vols - obs["iv"].to_numpy())[core.to_numpy()]) < 0.15
