"""Coverage statistics against hand calculations, textbook tables and independent libraries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, chi2, chi2_contingency

from pmargin.analytics.coverage import (
    christoffersen,
    coverage,
    kupiec_pof,
    load_coverage_params,
    traffic_light_zone,
    traffic_light_zones,
    transitions,
)
from pmargin.errors import InvalidInput, ParamsError

P = load_coverage_params()


def _series(n: int, days: list[int]) -> np.ndarray:
    e = np.zeros(n, dtype=bool)
    e[days] = True
    return e


def test_kupiec_by_hand():
    # n = 250, x = 4, p = 1 %: written out term by term
    lr_hand = -2 * (246 * math.log(0.99) + 4 * math.log(0.01)) \
        + 2 * (246 * math.log(246 / 250) + 4 * math.log(4 / 250))
    lr, pv = kupiec_pof(250, 4, 0.01)
    assert lr == pytest.approx(lr_hand, rel=1e-12)
    assert pv == pytest.approx(math.erfc(math.sqrt(lr_hand / 2)), rel=1e-10)  # chi2(1) tail
    # x = 0: the second term vanishes (0 ln 0 = 0)
    assert kupiec_pof(250, 0, 0.01)[0] == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-12)
    # x = n: only the p^x term
    assert kupiec_pof(3, 3, 0.01)[0] == pytest.approx(-2 * 3 * math.log(0.01), rel=1e-12)


def test_kupiec_independently_from_binomial_log_likelihoods():
    for n, x, p in ((250, 4, 0.01), (1000, 17, 0.01), (500, 40, 0.05), (2800, 0, 0.01)):
        lr_binom = 2 * (binom.logpmf(x, n, x / n) - binom.logpmf(x, n, p))
        assert kupiec_pof(n, x, p)[0] == pytest.approx(lr_binom, rel=1e-9, abs=1e-12)
        assert kupiec_pof(n, x, p)[1] == pytest.approx(chi2.sf(lr_binom, 1), rel=1e-9)


@pytest.mark.parametrize(("n", "accepted", "first"), [(255, range(0, 7), 1),
                                                       (510, range(2, 11), 0),
                                                       (1000, range(5, 17), 0)])
def test_kupiec_non_rejection_regions_of_the_textbook_table(n, accepted, first):
    """Jorion, Value at Risk, table 'non-rejection region for N at 95 % confidence', p = 1 %.

    The table gives 'N < 7' for 255 days; it states no lower bound there, although the
    likelihood ratio of N = 0 (5.13) is above 3.84, so that row is checked from N = 1.
    """
    for x in range(first, 25):
        rejected = kupiec_pof(n, x, 0.01)[0] > chi2.ppf(0.95, 1)
        assert rejected == (x not in accepted), (n, x)


@pytest.mark.parametrize(("x", "zone"), [(0, "green"), (4, "green"), (5, "yellow"),
                                         (9, "yellow"), (10, "red"), (30, "red")])
def test_traffic_light_boundaries_at_250_days(x, zone):
    """Basel (1996) table 2: 250 observations at 99 %: green 0-4, yellow 5-9, red 10 and more."""
    tl = P.traffic_light
    assert tl.window == 250
    assert P.level == 0.99
    assert traffic_light_zone(x, 250, 0.01, tl.yellow_from, tl.red_from) == zone


def test_traffic_light_windows_with_known_counts():
    tl = P.traffic_light
    e = np.zeros(800, dtype=bool)
    e[[1, 2, 3, 4]] = True  # window 0: 4 -> green
    e[250 + np.arange(5)] = True  # window 1: 5 -> yellow
    e[500 + np.arange(0, 40, 4)] = True  # window 2: 10 -> red
    zones = traffic_light_zones(e, 0.01, 250, tl.yellow_from, tl.red_from)
    assert zones == [(0, 4, "green"), (250, 5, "yellow"), (500, 10, "red")]  # 50 days left out
    e2 = np.zeros(800, dtype=bool)
    e2[[10, 20, 30, 40, 50, 60, 70, 80, 90]] = True
    r = coverage(np.ones(800), np.where(e2, 2.0, 0.0))
    assert (r.windows_green, r.windows_yellow, r.windows_red) == (2, 1, 0)
    assert r.worst_window == 9
    assert r.worst_zone == "yellow"


def test_christoffersen_by_hand_and_against_a_g_test():
    e = _series(20, [3, 4, 10, 15, 16, 17])
    n00, n01, n10, n11 = transitions(e)
    assert (n00, n01, n10, n11) == (10, 3, 3, 3)
    pi0, pi1, pi = 3 / 13, 3 / 6, 6 / 19
    lr_hand = -2 * (13 * math.log(1 - pi) + 6 * math.log(pi)) + 2 * (
        10 * math.log(1 - pi0) + 3 * math.log(pi0) + 3 * math.log(1 - pi1) + 3 * math.log(pi1))
    lr_ind, p_ind, lr_cc, p_cc = christoffersen(e, 0.01)
    assert lr_ind == pytest.approx(lr_hand, rel=1e-12)
    # independent: the likelihood-ratio (G) test of independence of the 2x2 transition table
    g, pg, dof, _ = chi2_contingency(np.array([[n00, n01], [n10, n11]]),
                                     correction=False, lambda_="log-likelihood")
    assert dof == 1
    assert lr_ind == pytest.approx(g, rel=1e-10)
    assert p_ind == pytest.approx(pg)
    assert lr_cc == pytest.approx(lr_ind + kupiec_pof(20, 6, 0.01)[0], rel=1e-12)
    assert p_cc == pytest.approx(chi2.sf(lr_cc, 2), rel=1e-12)


def test_christoffersen_against_random_series_and_statsmodels():
    from statsmodels.stats.contingency_tables import Table

    rng = np.random.default_rng(3)
    for _ in range(20):
        e = rng.random(400) < rng.uniform(0.02, 0.3)
        n00, n01, n10, n11 = transitions(e)
        if min(n00 + n01, n10 + n11) == 0:
            continue
        lr_ind = christoffersen(e, 0.01)[0]
        tab = Table(np.array([[n00, n01], [n10, n11]], dtype=float), shift_zeros=False)
        # G statistic from statsmodels' fitted values under independence
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 ln 0 = 0
            g = 2 * np.nansum(tab.table_orig * np.log(tab.table_orig / tab.fittedvalues))
        assert lr_ind == pytest.approx(g, rel=1e-9, abs=1e-12)


def test_clustered_exceedances_fail_independence_spread_ones_do_not():
    clustered = _series(1000, list(range(100, 110)))
    spread = _series(1000, list(range(50, 1000, 100)))
    assert christoffersen(clustered, 0.01)[1] < 0.001
    assert christoffersen(spread, 0.01)[1] > 0.5
    # same count: same Kupiec
    assert kupiec_pof(1000, 10, 0.01)[0] == pytest.approx(0.0, abs=1e-12)


def test_no_exceedance_after_an_exceedance_day():
    lr, p, _, _ = christoffersen(_series(10, [9]), 0.01)  # only the last day
    assert (lr, p) == (0.0, 1.0)


def test_coverage_counts_shortfall_and_missing_margins():
    margin = np.array([10.0, 10.0, 10.0, np.nan, 10.0, 10.0])
    loss = np.array([12.0, 5.0, 10.0, 1.0, np.nan, 15.0])
    r = coverage(margin, loss)
    # day 4 loss NaN dropped; day 3 margin missing -> 0 -> exceeded by a loss of 1
    assert r.n == 5
    assert r.exceedances == 3
    assert r.missing_margin == 1
    assert r.coverage == pytest.approx(0.4)
    assert r.mean_shortfall == pytest.approx((2.0 + 1.0 + 5.0) / 3)
    assert r.max_shortfall == pytest.approx(5.0)
    assert r.average_margin == pytest.approx(40.0 / 5)
    assert r.windows_green == r.windows_yellow == r.windows_red == 0  # no full window


def test_bad_inputs():
    with pytest.raises(InvalidInput) as e:
        kupiec_pof(10, 11, 0.01)
    assert e.value.field == "x"
    with pytest.raises(InvalidInput) as e:
        kupiec_pof(10, 1, 1.5)
    assert e.value.field == "p"
    with pytest.raises(InvalidInput) as e:
        coverage(np.ones(3), np.ones(4))
    assert e.value.field == "margin"
    with pytest.raises(ParamsError):
        load_coverage_params(overrides={"level": 1.5})
