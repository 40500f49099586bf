"""The CLI serves derive-pm2 wherever the README says it does (issue 8.8)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pmargin
from pmargin.cli import app
from tests.conftest import shared_path
from tests.factories import expiry_code, make_market

runner = CliRunner()
SNAPSHOT = "deribit_options_snapshot_20260822T153351Z.csv.gz"
PRESET = Path(pmargin.__file__).parent / "models" / "presets" / "derive-pm2.toml"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-derive")
    (d / "market.json").write_text(json.dumps(make_market().to_dict()))
    # 2 BTC perp long on a USDC account (make_market: BTC 80,000)
    (d / "perp.json").write_text(json.dumps({
        "margin_currency": "USDC", "collateral": {"USDC": 50_000.0},
        "positions": [{"instrument": "BTC_USDC-PERPETUAL", "quantity": 2}]}))
    (d / "call.json").write_text(json.dumps({
        "margin_currency": "USDC", "collateral": {"USDC": 100_000.0},
        "positions": [{"instrument": "BTC-25SEP26-100000-C", "quantity": -1}]}))
    (d / "option.json").write_text(json.dumps({
        "margin_currency": "USDC", "collateral": {"USDC": 30_000.0},
        "positions": [{"instrument": f"BTC_USDC-{expiry_code(30)}-88000-C", "quantity": -1}]}))
    return d


def test_margin_on_a_json_market(files):
    out = runner.invoke(app, ["margin", str(files / "perp.json"), "--market",
                              str(files / "market.json"), "--model", "derive-pm2", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["model"] == "derive-pm2"
    assert data["margin_currency"] == "USDC"
    # hand calculation: worst scenario x0.82 loses 0.18 x 2 x 80,000 = 28,800; perp
    # contingency on 2 x 80,000: MM 1.5 %, IM 2 % (MM + IM percents)
    assert data["initial_margin"] == pytest.approx(28_800 + 0.02 * 160_000, rel=1e-12)
    assert data["maintenance_margin"] == pytest.approx(0.8 * 28_800 + 0.015 * 160_000,
                                                       rel=1e-12)
    assert data["equity"] == pytest.approx(50_000.0)
    assert data["health"] == "healthy"
    assert {"name", "price_shock", "vol_shock", "weight", "pnl"} <= set(data["scenarios"][0])


def test_margin_table_with_explain(files):
    out = runner.invoke(app, ["margin", str(files / "option.json"), "-m",
                              str(files / "market.json"), "--model", "derive-pm2", "--explain"])
    assert out.exit_code == 0, out.output
    assert "derive-pm2 (portfolio) margin" in out.output
    assert "risk matrix" in out.output


@pytest.mark.data
def test_margin_on_the_real_deribit_snapshot(files):
    market = shared_path("data", "deribit", SNAPSHOT)
    out = runner.invoke(app, ["margin", str(files / "call.json"), "--market", str(market),
                              "--model", "derive-pm2", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["margin_currency"] == "USDC"
    assert data["initial_margin"] >= data["maintenance_margin"] > 0.0
    # the worst case is at least the short call's loss in the x0.82 ... x1.18 grid, and the
    # requirement is -W x loss factor + contingencies (components, all >= 0)
    c = data["components"]
    assert min(c.values()) >= 0.0
    assert data["initial_margin"] == pytest.approx(
        c["worst_case"] + c["naked_short_im"] + c["perp_contingency_im"]
        + c["collateral_haircut_im"] + c["oracle_contingency"] + c["open_orders"], rel=1e-12)


def test_params_show_list_and_validate(tmp_path):
    out = runner.invoke(app, ["params", "show", "derive-pm2"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["model"] == "derive-pm2"
    assert len(data["digest"]) == 64
    assert data["margin"]["mm_loss_factor"] == 0.8
    assert data["account"]["cash_currency"] == "USDC"
    out = runner.invoke(app, ["params", "list"])
    assert out.exit_code == 0, out.output
    assert any(line.split()[:2] == ["derive-pm2", "derive-pm2"]
               for line in out.output.splitlines())
    out = runner.invoke(app, ["params", "validate", str(PRESET)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("ok ")
    bad = tmp_path / "bad.toml"
    bad.write_text(PRESET.read_text().replace("mm_loss_factor = 0.8", "mm_los_factor = 0.8"))
    out = runner.invoke(app, ["params", "validate", str(bad)])
    assert out.exit_code == 2  # bad input (docs/cli.md)
    assert "mm_los_factor" in out.output
