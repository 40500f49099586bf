"""FHS filtering: the conditional volatility is arch's, and equals an independent recursion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from arch import arch_model

from pmargin.models.var_fhs import load_var_fhs_params
from pmargin.models.var_fhs.scenarios import filter_series, scenario_set, vol_proxy_beta
from tests.models.var_fhs.test_model import SERIES


def _params(**over):
    return load_var_fhs_params(overrides={"history_start": "2018-01-01",
                                          "stressed_periods": [], **over})


def test_ewma_filter_equals_the_textbook_recursion_after_burn_in():
    p = _params(filter="ewma", ewma_lambda=0.94)
    f = filter_series(SERIES["BTC"], p)
    r = f.ret
    lam = 0.94
    var = np.empty(r.size)
    var[0] = r[:50].var()  # any start: its weight decays as lam**t
    for t in range(1, r.size):
        var[t] = lam * var[t - 1] + (1 - lam) * r[t - 1] ** 2
    burn = 500  # 0.94**500 ~ 4e-14
    np.testing.assert_allclose(f.sigma_ret[burn:], np.sqrt(var[burn:]), rtol=1e-8)
    want_fc = math.sqrt(lam * var[-1] + (1 - lam) * r[-1] ** 2)
    assert f.forecast_ret == pytest.approx(want_fc, rel=1e-8)


def test_garch_filter_is_archs_own_fit():
    p = _params(filter="garch")
    f = filter_series(SERIES["BTC"], p)
    res = arch_model(f.ret * 100.0, mean="Zero", vol="GARCH", p=1, q=1,
                     rescale=False).fit(disp="off")
    np.testing.assert_allclose(f.sigma_ret, np.asarray(res.conditional_volatility) / 100.0,
                               rtol=1e-6)


def test_vol_proxy_is_the_ols_fit_and_applies_only_before_dvol():
    s = SERIES["BTC"]
    r, dv = s.log_returns, s.log_vol_changes
    a, b = vol_proxy_beta(r, dv)
    ok = np.isfinite(dv)
    slope, intercept = np.polyfit(r[ok], dv[ok], 1)
    assert (a, b) == pytest.approx((intercept, slope), rel=1e-9, abs=1e-12)
    p = _params()
    f = filter_series(s, p)
    sc = scenario_set({"BTC": f}, {"BTC": f.forecast_ret}, p)
    assert sc.vol_proxy.sum() == f.vol_proxy.sum() > 0
    # a proxied day's vol change is the regression at the scenario's own daily return
    i = int(np.flatnonzero(sc.vol_proxy)[0])
    r_day = np.log1p(sc.move["BTC"][i]) / math.sqrt(p.horizon_days)
    v_day = np.log(sc.vol_factor["BTC"][i]) / math.sqrt(p.horizon_days)
    assert v_day == pytest.approx(a + b * r_day, rel=1e-9)


def test_stressed_days_are_added_raw():
    p = _params(stressed_periods=[{"name": "x", "start": str(SERIES["BTC"].day[100]),
                                   "end": str(SERIES["BTC"].day[109])}])
    f = filter_series(SERIES["BTC"], p)
    sc = scenario_set({"BTC": f}, {"BTC": f.forecast_ret}, p)
    assert sc.stressed.sum() == 10
    raw = f.ret[(f.day >= SERIES["BTC"].day[100]) & (f.day <= SERIES["BTC"].day[109])]
    np.testing.assert_allclose(np.log1p(sc.move["BTC"][sc.stressed]),
                               raw * math.sqrt(p.horizon_days), rtol=1e-12)
