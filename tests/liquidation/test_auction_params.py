"""Dutch-auction parameters (``auction.toml``): source, validation, schedule inversion."""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest

from pmargin.errors import ParamsError
from pmargin.liquidation import load_auction_params

D = Decimal
MIN = 60


@pytest.mark.parametrize("target", ["0.95", "0.9", "0.7", "0.35", "0.0001"])
def test_solvent_time_of_inverts_the_schedule(target: str) -> None:
    params = load_auction_params()
    t = params.solvent_time_of(D(target))
    assert t is not None
    assert abs(params.discount_at(t) - D(target)) < D("1E-20")
    assert params.solvent_time_of(D(1)) == 0
    assert params.solvent_time_of(D(0)) is None


def test_params_document_their_source_and_assumptions() -> None:
    params = load_auction_params()
    assert "DutchAuction.sol" in params.source
    assert params.assumptions
    assert params.liquidator_fee_rate == D("0.10")
    assert params.buffer_margin_fraction == D("0.15")
    assert params.insolvent.length_seconds == 60 * MIN


def test_invalid_params_files(tmp_path: Path) -> None:
    shipped = resources.files("pmargin.liquidation").joinpath("auction.toml").read_text()
    bad = tmp_path / "fee.toml"
    bad.write_text(shipped.replace("\nliquidator_fee_rate = 0.10", "\nliquidator_fee_rate = 0.2"))
    with pytest.raises(ParamsError, match="cap"):
        load_auction_params(bad)
    bad.write_text(shipped.replace("fast_cutoff_fraction = 0.70", "fast_cutoff_fraction = 0.99"))
    with pytest.raises(ParamsError, match="fast_cutoff_fraction"):
        load_auction_params(bad)
