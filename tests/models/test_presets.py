import numpy as np
import pytest

from pmargin.errors import ParamsError
from pmargin.models import list_presets, load_model, load_params
from pmargin.models.grid import build_grid
from pmargin.models.portfolio_margin import _tiered


@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_validates(name):
    p = load_model(name).params  # each model family through its own loader
    assert p.source
    assert p.name == name


def test_unknown_parameter_fails_loudly():
    with pytest.raises(ParamsError, match="price_rnage"):
        load_params("deribit-pm", {"underlyings.BTC.grid.price_rnage": 0.2})


def test_out_of_range_parameter_names_the_field():
    with pytest.raises(ParamsError, match="price_range"):
        load_params("deribit-pm", {"underlyings.BTC.grid.price_range": 1.5})


def test_override_changes_grid():
    m = load_model("deribit-pm", {"underlyings.BTC.grid.price_range": 0.2})
    g = build_grid(m.params.for_underlying("BTC"))
    assert g.move.max() == pytest.approx(5.0)  # extended +500% still last
    assert sorted(set(g.move[~g.extended]))[-1] == pytest.approx(0.2)


def test_okx_mr7_tier_scaling_tv06():
    # TV-06: raw MR7 30,000 USD -> 10,000 x 1 + 20,000 x 2 = 50,000
    tiers = load_params("okx-pm").for_underlying("BTC").min_charge.tiers
    assert _tiered(np.array([30000.0]), tiers)[0] == pytest.approx(50000.0)


def test_span_extreme_scenarios_at_35_percent_of_two_psr():
    g = build_grid(load_params("span").for_underlying("BTC"))
    assert g.size == 16
    assert g.weight[-2:] == pytest.approx([0.35, 0.35])
    assert g.move[-2:] == pytest.approx([0.4, -0.4])
    # McMillan: extreme loss 2 x PSR counted at 35% -> 0.7 x PSR for a linear position
    assert 0.35 * g.move[-2] == pytest.approx(0.7 * 0.2)


def test_deribit_vol_multipliers_tv18():
    from pmargin.scenarios import term_scale, vol_multiplier_down, vol_multiplier_up

    dte = np.array([1, 7, 14, 30, 60, 90, 180.0])
    s = term_scale(dte, short_power=0.3, long_power=0.13)
    assert vol_multiplier_up(0.5, s) == pytest.approx(
        [2.3871, 1.7737, 1.6284, 1.5, 1.4569, 1.4335, 1.3961], abs=1e-4)
    assert vol_multiplier_down(0.25, s) == pytest.approx(
        [0.3065, 0.6131, 0.6858, 0.75, 0.7715, 0.7833, 0.8019], abs=1e-4)
