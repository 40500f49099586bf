"""Venue configuration: strict keys, known models, a quantum for every currency."""

from pathlib import Path

import pytest

from pmargin.errors import ParamsError
from pmargin.service.config import load_venue

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "pmargin" / "service" / "venue.toml"


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = SHIPPED.read_text()
    assert old in text
    p = tmp_path / "venue.toml"
    p.write_text(text.replace(old, new))
    return p


def test_shipped_venue_loads():
    cfg = load_venue()
    assert [b.id for b in cfg.books] == ["BTC"]
    assert cfg.quantum("BTC") > 0


@pytest.mark.parametrize(("old", "new", "field"), [
    ("futures_price_band", "futures_price_bnd", "market.futures_price_bnd"),
    ('model = "deribit-pm"', 'model = "deribit-pmm"', "books[0].model"),
    ('collateral_currencies = ["BTC"]', 'collateral_currencies = ["BTC", "XYZ"]',
     "money.quanta"),
    ('BTC = "0.00000001"', 'BTC = "-1"', "money.quanta"),
])
def test_bad_venue_is_a_params_error_naming_the_field(tmp_path, old, new, field):
    with pytest.raises(ParamsError) as err:
        load_venue(_variant(tmp_path, old, new))
    assert err.value.field.startswith(field)
