"""CLI of the systemic analytics: audit, margin --efficiency, replay-crash, report (inputs and
outputs; the figures themselves are tested in tests/analytics)."""

import json

import pytest
from typer.testing import CliRunner

from pmargin.cli import app
from tests.factories import expiry_code, make_market

runner = CliRunner()
MARKET = make_market(linear=False)


def files(tmp_path):
    mkt = tmp_path / "market.json"
    mkt.write_text(json.dumps({"valuation_time": MARKET.to_dict()["valuation_time"],
                               "market": MARKET.to_dict()}))
    put = f"BTC-{expiry_code(30)}-72000-P"
    accounts = [
        {"account_id": "a", "margin_currency": "BTC", "collateral": {"BTC": 0.5},
         "positions": [{"instrument": put, "quantity": -2}]},
        {"account_id": "b", "margin_currency": "BTC", "collateral": {"BTC": 1.0},
         "positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1, "avg_price": 80000}]},
    ]
    book = tmp_path / "book.json"
    book.write_text(json.dumps({"accounts": accounts}))
    pf = tmp_path / "pf.json"
    pf.write_text(json.dumps(accounts[0]))
    return mkt, book, pf


def test_audit_of_a_book_file(tmp_path):
    mkt, book, _ = files(tmp_path)
    res = runner.invoke(app, ["audit", str(book), "-m", str(mkt), "--models",
                              "deribit-sm,deribit-pm", "--json"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["accounts"] == 2
    assert {c["model"] for c in data["curves"]} == {"deribit-sm", "deribit-pm"}
    assert len(data["curves"][0]["moves"]) == 61


def test_audit_needs_exactly_one_book(tmp_path):
    mkt, book, _ = files(tmp_path)
    for args in (["audit", "-m", str(mkt)], ["audit", str(book), "--generate", "5"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2
        assert "BOOK" in res.stderr


def test_audit_refuses_a_bad_book_naming_the_field(tmp_path):
    mkt, _, _ = files(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"accounts": [{"margin_currency": "BTC",
                                             "positions": [{"instrument": "BTC-PERPETUAL",
                                                            "quantity": "x"}]}]}))
    res = runner.invoke(app, ["audit", str(bad), "-m", str(mkt)])
    assert res.exit_code == 2
    assert "book.accounts[0].positions[0].quantity" in res.stderr


def test_audit_of_a_missing_service_database(tmp_path):
    res = runner.invoke(app, ["audit", "--database-url", f"sqlite:///{tmp_path}/none.db",
                              "--service-book", "BTC"])
    assert res.exit_code == 2
    assert "--database-url" in res.stderr


def test_margin_efficiency_json(tmp_path):
    mkt, _, pf = files(tmp_path)
    res = runner.invoke(app, ["margin", str(pf), "-m", str(mkt), "--model", "deribit-pm",
                              "--efficiency", "--json"])
    assert res.exit_code == 0, res.stderr
    eff = json.loads(res.stdout)["efficiency"]
    assert eff["isolated_model"] == "deribit-sm-isolated"
    assert eff["gross_notional_usd"] == 2 * 80000.0
    assert "BTC" in eff["liquidation_distance"]


def test_replay_crash_unknown_episode_is_bad_input():
    res = runner.invoke(app, ["replay-crash", "luna-2022"])
    assert res.exit_code == 2
    assert "EPISODE" in res.stderr


def test_replay_crash_refuses_zero_jobs():
    res = runner.invoke(app, ["replay-crash", "ftx-2022", "--jobs", "0"])
    assert res.exit_code == 2
    assert "--jobs" in res.stderr


@pytest.mark.data
def test_replay_crash_names_the_regime_that_cannot_run():
    from pmargin.demo import find_shared

    if find_shared() is None:
        pytest.skip("../shared/data not found")
    args = ["replay-crash", "covid-2020", "--asset", "BTC", "--accounts", "10",
            "--regimes", "var-fhs,deribit-sm", "--jobs", "2"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)["replays"]
    assert [r["regime"] for r in rows] == ["var-fhs", "deribit-sm"]
    assert "DVOL" in rows[0]["reason"]
    assert rows[0]["bad_debt_usd"] is None
    assert rows[1]["reason"] == ""
    assert rows[1]["conservation_error"] == "0"
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.stderr
    assert "var-fhs not run:" in " ".join(text.stdout.split())


def test_report_refuses_a_non_html_output(tmp_path):
    res = runner.invoke(app, ["report", "--out", str(tmp_path / "r.pdf")])
    assert res.exit_code == 2
    assert "--out" in res.stderr
