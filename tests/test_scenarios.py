import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.models.derive.params import load_derive_pm2_params
from pmargin.scenarios import (
    SkewShockParams,
    skew_multipliers,
    tail_weight,
    term_scale,
    vol_multiplier_down,
    vol_multiplier_up,
)

# Derive's P0 skew parameters (methodologies.md 6.3), written out
SKEW = SkewShockParams(linear_scale_cap=0.15, linear_cbase=-0.05, abs_scale_cap=0.15,
                       abs_cbase=-0.05, min_k_star=0.01, min_width_scale=4.0,
                       vol_param_static=0.6, vol_param_scale=-0.1)


def test_tail_weights_tv13():
    # TV-13: Paradex 0.16/|m|; Derive PM2 dampening 0.2 x 0.18/|m|
    moves = np.array([-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert tail_weight(moves, 0.16) * 100 == pytest.approx(
        [24.2424, 48.4848, 32, 16, 8, 5.3333, 4, 3.2], abs=1e-4)
    assert tail_weight(moves[:6], 0.18, 0.2) * 100 == pytest.approx(
        [5.4545, 10.9091, 7.2, 3.6, 1.8, 1.2], abs=1e-4)
    assert tail_weight(np.array([0.1]), 0.16)[0] == 1.0  # inside the range: full weight


def test_term_scale_switches_exponent_at_the_pivot():
    s = term_scale(np.array([29.999, 30.0]), short_power=0.3, long_power=0.13)
    assert s == pytest.approx([(30 / 29.999) ** 0.3, 1.0])
    inclusive = term_scale(np.array([30.0, 15.0]), short_power=0.3, long_power=0.13,
                           short_inclusive=True)
    assert inclusive == pytest.approx([1.0, 2 ** 0.3])
    floored = term_scale(np.array([0.0, 0.5]), short_power=0.3, long_power=0.13, floor_days=1)
    assert floored == pytest.approx([30 ** 0.3, 30 ** 0.3])


@given(st.floats(0.01, 2000), st.floats(0, 2), st.floats(0, 2))
def test_multipliers_are_monotone_and_down_never_negative(dte, up, down):
    s = term_scale(np.array([dte]), short_power=0.3, long_power=0.13)
    assert vol_multiplier_up(up, s)[0] >= 1.0
    d = vol_multiplier_down(down, s)[0]
    assert 0.0 <= d <= 1.0


# ----------------------------------------------------------------------------- skew shocks
def test_skew_parameters_accept_case_file_names_and_match_the_derive_preset():
    same = SkewShockParams.model_validate({"LINEAR_SCALE_CAP": 0.15, "LINEAR_CBASE": -0.05,
                                           "ABS_SCALE_CAP": 0.15, "ABS_CBASE": -0.05,
                                           "MIN_K_STAR": 0.01, "MIN_WIDTH_SCALE": 4.0,
                                           "VOL_PARAM_STATIC": 0.6, "VOL_PARAM_SCALE": -0.1})
    assert same == SKEW == load_derive_pm2_params().skew_shock
    with pytest.raises(ValueError, match="min_k_star"):
        SkewShockParams.model_validate({**SKEW.model_dump(), "min_k_star": -1.0})


def test_skew_multipliers_hand_values():
    tau = np.array([1_399_652 / (365 * 86400)])
    lin, ab = skew_multipliers(tau, np.array([0.04161780690220832]), SKEW)
    assert lin[0] == pytest.approx(1.0118974505108735, rel=1e-13)
    assert ab[0] == pytest.approx(1.0118974505108735, rel=1e-13)
    lin_n, ab_n = skew_multipliers(tau, np.array([-0.04161780690220832]), SKEW)
    assert lin_n[0] == pytest.approx(2.0 - 1.0118974505108735, rel=1e-13)
    assert ab_n[0] == pytest.approx(1.0118974505108735, rel=1e-13)
    # deep wings are capped at 1 +/- cap
    cap = -0.05 * math.sqrt(tau[0]) + 0.15
    lin_w, ab_w = skew_multipliers(np.repeat(tau, 2), np.array([-5.0, 5.0]), SKEW)
    assert lin_w == pytest.approx([1 - cap, 1 + cap])
    assert ab_w == pytest.approx([1 + cap, 1 + cap])


def test_skew_multiplier_negative_cap_is_piecewise_not_clip():
    skew = SKEW.model_copy(update={"linear_scale_cap": -0.1, "linear_cbase": 0.0})
    tau = np.array([0.1, 0.1])
    kstar = max(0.01, 4 * math.sqrt(0.1) * (0.6 - 0.1 * math.sqrt(0.1)))
    k = np.array([0.5 * kstar, -0.5 * kstar])
    lin, _ = skew_multipliers(tau, k, skew)
    # k >= 0: 1 + min(cap, k cap / k*) = 1 + cap; k < 0: 1 + max(-cap, k cap / k*) = 1 - cap
    assert lin == pytest.approx([0.9, 1.1])
