import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.scenarios import tail_weight, term_scale, vol_multiplier_down, vol_multiplier_up


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
