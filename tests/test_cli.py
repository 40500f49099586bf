"""The CLI end to end (typer's runner; no subprocess)."""

import json

import pytest
from typer.testing import CliRunner

from pmargin.cli import app
from tests.conftest import shared_path
from tests.factories import VALUATION, expiry_code, make_market

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    market = make_market()
    (d / "market.json").write_text(json.dumps(market.to_dict()))
    pf = {"margin_currency": "BTC", "collateral": {"BTC": 1.0}, "positions": [
        {"instrument": f"BTC-{expiry_code(30)}-72000-P", "quantity": -5},
        {"instrument": "BTC-PERPETUAL", "quantity": 0.5}]}
    (d / "pf.json").write_text(json.dumps(pf))
    weak = dict(pf, collateral={"BTC": 0.3})
    (d / "weak.json").write_text(json.dumps(weak))
    assert VALUATION
    return d


def test_margin_json_has_the_documented_keys(files):
    out = runner.invoke(app, ["margin", str(files / "pf.json"), "--market",
                              str(files / "market.json"), "--model", "deribit-pm", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    for key in ("initial_margin", "maintenance_margin", "margin_currency", "components",
                "worst_scenario", "scenarios"):
        assert key in data
    assert {"name", "price_shock", "vol_shock", "weight", "pnl"} <= set(data["scenarios"][0])
    assert data["margin_currency"] == "BTC"


def test_margin_table_explain_and_plot(files, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "risk.png"
    out = runner.invoke(app, ["margin", str(files / "pf.json"), "-m", str(files / "market.json"),
                              "--model", "pmargin", "--explain", "--plot", str(png)])
    assert out.exit_code == 0, out.output
    assert "risk matrix" in out.output
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(("model", "mode"), [("deribit-sm", "cross"),
                                             ("deribit-sm-isolated", "isolated")])
def test_standard_margin_modes(files, model, mode):
    out = runner.invoke(app, ["margin", str(files / "pf.json"), "-m", str(files / "market.json"),
                              "--model", model, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["mode"] == mode


def test_bad_input_exits_with_a_named_error(files, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"margin_currency": "BTC", "positions": [
        {"instrument": "BTC-99ZZZ99-1-C", "quantity": 1}]}))
    out = runner.invoke(app, ["margin", str(bad), "-m", str(files / "market.json")])
    assert out.exit_code == 2
    assert "positions[0].instrument" in out.stderr


def test_greeks(files):
    out = runner.invoke(app, ["greeks", str(files / "pf.json"), "-m", str(files / "market.json"),
                              "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data["total"]) >= {"delta", "gamma", "vega", "theta"}


@pytest.mark.data
def test_conformance_run_ends_with_counts():
    out = runner.invoke(app, ["conformance", "run", str(shared_path("conformance", "vectors")),
                              str(shared_path("conformance", "derive-pm2"))])
    assert out.exit_code == 0, out.output
    last = out.output.strip().splitlines()[-1]
    assert last.endswith("0 failed")
    assert "passed" in last


@pytest.mark.data
def test_conformance_failure_gives_non_zero_exit(tmp_path):
    src = json.loads(shared_path("conformance", "vectors", "linear_sm_short_put.json").read_text())
    src["expect"]["initial_margin"] = 1.0
    p = tmp_path / "wrong.json"
    p.write_text(json.dumps(src))
    out = runner.invoke(app, ["conformance", "run", str(p)])
    assert out.exit_code == 1
    assert out.output.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_liquidate_plan(files):
    out = runner.invoke(app, ["liquidate", str(files / "weak.json"), "-m",
                              str(files / "market.json"), "--model", "deribit-pm", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)["plan"]
    assert data["needed"]
    assert data["healthy_after"]
    assert data["steps"]


@pytest.mark.data
def test_stress_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    shared_path("data", "deribit")
    png = tmp_path / "c.png"
    out = runner.invoke(app, ["stress", "--accounts", "25", "--shock", "-0.3", "--model",
                              "portfolio", "--json", "--plot", str(png)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)["cascades"][0]
    for key in ("rounds", "liquidated_notional_usd", "bad_debt_usd", "insurance_fund_used_usd",
                "adl_usd", "socialised_usd", "conservation_error"):
        assert key in data
    assert data["conservation_error"] == "0"
    assert png.exists()


def test_params_list_and_show():
    out = runner.invoke(app, ["params", "list"])
    assert out.exit_code == 0
    assert "deribit-pm" in out.output
    out = runner.invoke(app, ["params", "show", "okx-pm"])
    assert out.exit_code == 0
    assert json.loads(out.output)["composition"]["factor"] == 1.3


def test_demo_runs():
    out = runner.invoke(app, ["demo"])
    assert out.exit_code == 0, out.output
    assert "naked short put" in out.output
    assert "covered call" in out.output


@pytest.mark.parametrize("execution", ["takeover", "auction"])
def test_liquidate_by_slices_conserves_money(files, execution):
    out = runner.invoke(app, ["liquidate", str(files / "weak.json"), "-m",
                              str(files / "market.json"), "--execution", execution, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)["slices"]
    assert data["conservation_error"] == "0"
    assert 0 < data["fraction_sold"] <= 1
    assert data[execution] is not None
