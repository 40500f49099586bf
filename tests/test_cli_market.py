"""CLI: unlisted, expired and stale market data are one-line errors unless opted in."""

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from pmargin.cli import app
from tests.factories import VALUATION, expiry_code, make_market

runner = CliRunner()
UNLISTED = f"BTC-{expiry_code(30)}-81000-C"
LISTED = f"BTC-{expiry_code(30)}-80000-C"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_market")
    (d / "market.json").write_text(json.dumps(make_market().to_dict()))
    later = make_market().to_dict()
    later["valuation_time"] = (VALUATION + timedelta(days=8)).isoformat()
    later["instruments"] = {k: v for k, v in later["instruments"].items()
                            if expiry_code(7) not in k}
    later["settlement_prices"] = {f"BTC-{expiry_code(7)}": 70000.0}
    (d / "later.json").write_text(json.dumps(later))
    pf = {"margin_currency": "BTC", "collateral": {"BTC": 1.0}, "positions": [
        {"instrument": UNLISTED, "quantity": -1}, {"instrument": LISTED, "quantity": 1}]}
    (d / "pf.json").write_text(json.dumps(pf))
    old = {"margin_currency": "BTC", "collateral": {"BTC": 1.0}, "positions": [
        {"instrument": f"BTC-{expiry_code(7)}-72000-P", "quantity": -1}]}
    (d / "old.json").write_text(json.dumps(old))
    return d


def _one_line_error(out, *needles):
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1, out.output
    assert "Traceback" not in out.output
    for n in needles:
        assert n in lines[0]


@pytest.mark.parametrize("command", ["margin", "greeks", "liquidate"])
def test_unlisted_position_is_a_one_line_error(files, command):
    out = runner.invoke(app, [command, str(files / "pf.json"), "-m", str(files / "market.json")])
    _one_line_error(out, UNLISTED, "--price-unlisted")


def test_price_unlisted_marks_model_priced_positions(files):
    out = runner.invoke(app, ["margin", str(files / "pf.json"), "-m", str(files / "market.json"),
                              "--price-unlisted", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["model_priced"] == [UNLISTED]
    assert {p["instrument"]: p["priced_by"] for p in data["positions"]} == {
        UNLISTED: "model", LISTED: "market"}
    table = runner.invoke(app, ["margin", str(files / "pf.json"), "-m",
                                str(files / "market.json"), "--price-unlisted"])
    assert table.exit_code == 0, table.output
    assert f"model-priced (not listed in the market, priced from the surface): {UNLISTED}" \
        in table.output


@pytest.mark.parametrize("command", ["greeks", "liquidate"])
def test_price_unlisted_is_accepted_by_the_other_commands(files, command):
    out = runner.invoke(app, [command, str(files / "pf.json"), "-m", str(files / "market.json"),
                              "--price-unlisted", "--json"])
    assert out.exit_code == 0, out.output
    if command == "greeks":
        rows = json.loads(out.output)["positions"]
        assert {r["instrument"]: r["priced_by"] for r in rows} == {UNLISTED: "model",
                                                                  LISTED: "market"}


def test_expired_position_is_an_error_then_settles_on_request(files):
    name = f"BTC-{expiry_code(7)}-72000-P"
    args = ["margin", str(files / "old.json"), "-m", str(files / "later.json")]
    _one_line_error(runner.invoke(app, args), name, "expired at", "--settle-expired")
    out = runner.invoke(app, [*args, "--settle-expired", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["settled"] == [name]
    assert data["positions"][0]["priced_by"] == "settlement"


def test_stale_market_is_an_error(files):
    late = (VALUATION + timedelta(hours=1)).isoformat()
    args = ["margin", str(files / "pf.json"), "-m", str(files / "market.json"),
            "--price-unlisted", "--as-of", late]
    _one_line_error(runner.invoke(app, args), "market.data_time", "stale")
    ok = runner.invoke(app, [*args, "--max-age", "7200", "--json"])
    assert ok.exit_code == 0, ok.output
