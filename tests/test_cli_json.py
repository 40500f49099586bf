"""The JSON contract: every ``--json`` output validates against its published schema, has one
shape whatever the options, holds JSON numbers (no "inf"/"None" strings) and is alone on stdout.
"""

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from pmargin.cli import app
from tests.conftest import shared_path
from tests.factories import expiry_code, make_market

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
runner = CliRunner()


def schema(name):
    s = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def walk(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk(v)
    else:
        yield x


def json_out(args, schema_name, code=0):
    """Run, parse stdout as one JSON document, validate it, check the value rules."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, (res.stdout, res.stderr)
    data = json.loads(res.stdout)  # the whole of stdout is the JSON document
    jsonschema.validate(data, schema(schema_name), cls=jsonschema.Draft202012Validator)
    for v in walk(data):
        assert v not in ("inf", "-inf", "Infinity", "-Infinity", "NaN", "nan", "None"), v
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("json")
    (d / "market.json").write_text(json.dumps(make_market().to_dict()))
    put = f"BTC-{expiry_code(30)}-72000-P"
    (d / "pf.json").write_text(json.dumps({
        "margin_currency": "BTC", "collateral": {"BTC": 1.0},
        "positions": [{"instrument": put, "quantity": -5},
                      {"instrument": "BTC-PERPETUAL", "quantity": 0.5}]}))
    (d / "weak.json").write_text(json.dumps({
        "margin_currency": "BTC", "collateral": {"BTC": 0.3},
        "positions": [{"instrument": put, "quantity": -5},
                      {"instrument": "BTC-PERPETUAL", "quantity": 0.5}]}))
    # no collateral, short an option: equity is negative, the margin ratio is unbounded
    (d / "bankrupt.json").write_text(json.dumps({
        "margin_currency": "BTC", "collateral": {},
        "positions": [{"instrument": f"BTC-{expiry_code(30)}-88000-C", "quantity": -3}]}))
    return d


def test_schema_files_exist_for_every_json_command():
    names = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    assert names >= {"margin", "greeks", "liquidate", "stress", "hedges", "conformance-run",
                     "params-list", "params-show", "params-validate", "bench-book"}


@pytest.mark.parametrize("model", ["deribit-sm", "linear-sm", "deribit-pm", "pmargin", "okx-pm",
                                   "span", "paradex-pm"])
def test_margin_json_has_one_shape_for_every_model(files, model):
    data = json_out(["margin", files / "pf.json", "-m", files / "market.json", "--model", model,
                     "--json"], "margin")
    assert {"worst_scenario", "scenarios", "margin_ratio_reason"} <= set(data)


def test_margin_ratio_is_null_with_a_reason_when_equity_is_negative(files):
    data = json_out(["margin", files / "bankrupt.json", "-m", files / "market.json", "--model",
                     "deribit-pm", "--json"], "margin")
    assert data["equity"] < 0
    assert data["margin_ratio"] is None
    assert "equity" in data["margin_ratio_reason"]


def test_greeks_json(files):
    data = json_out(["greeks", files / "pf.json", "-m", files / "market.json", "--json"],
                    "greeks")
    assert len(data["positions"]) == 2
    # the total is the sum of the positions (written out independently of the code's own sum)
    for k in ("delta", "gamma", "vega", "theta"):
        assert data["total"][k] == pytest.approx(sum(p[k] for p in data["positions"]))


@pytest.mark.parametrize("execution", ["market", "takeover", "auction"])
def test_liquidate_json_has_one_shape_for_every_execution(files, execution):
    data = json_out(["liquidate", files / "weak.json", "-m", files / "market.json",
                     "--execution", execution, "--json"], "liquidate")
    assert data["execution"] == execution
    assert (data["plan"] is None) == (execution != "market")
    assert (data["slices"] is None) == (execution == "market")


def test_liquidate_without_json_prints_no_json(files):
    res = runner.invoke(app, ["liquidate", str(files / "weak.json"), "-m",
                              str(files / "market.json"), "--execution", "auction"])
    assert res.exit_code == 0, res.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(res.stdout)
    assert "auction" in res.stdout


@pytest.mark.data
def test_stress_json_is_the_same_type_for_one_mode_and_for_all():
    shared_path("data", "deribit")
    one = json_out(["stress", "--accounts", "12", "--model", "portfolio", "--json"], "stress")
    assert [c["label"] for c in one["cascades"]] == ["portfolio"]
    every = json_out(["stress", "--accounts", "12", "--json"], "stress")
    assert [c["label"] for c in every["cascades"]] == ["isolated", "cross", "portfolio"]
    assert set(one) == set(every)
    assert set(one["cascades"][0]) == set(every["cascades"][0])


@pytest.mark.data
def test_stress_reports_accounts_asked_for_and_isolated_sub_accounts_apart():
    shared_path("data", "deribit")
    data = json_out(["stress", "--accounts", "12", "--json"], "stress")
    assert data["accounts"] == 12
    by = {c["label"]: c for c in data["cascades"]}
    for c in data["cascades"]:
        assert c["accounts"] == 12
    assert by["cross"]["isolated_sub_accounts"] is None
    assert by["portfolio"]["isolated_sub_accounts"] is None
    # isolated margin splits multi-position accounts: at least as many sub-accounts as accounts
    assert by["isolated"]["isolated_sub_accounts"] >= 12
    assert by["isolated"]["margined_accounts"] == by["isolated"]["isolated_sub_accounts"]


def test_hedges_json(files):
    data = json_out(["hedges", "-m", files / "market.json", "--json"], "hedges")
    assert data["structures"]


@pytest.mark.data
def test_conformance_json_has_counts():
    vectors = shared_path("conformance", "vectors")
    data = json_out(["conformance", "run", vectors, "--json"], "conformance-run")
    assert data["passed"] == len(data["cases"])
    assert data["failed"] == 0


@pytest.mark.data
def test_conformance_json_when_a_case_fails(tmp_path):
    src = json.loads(shared_path("conformance", "vectors", "linear_sm_short_put.json")
                     .read_text())
    src["expect"]["initial_margin"] = 1.0
    (tmp_path / "wrong.json").write_text(json.dumps(src))
    data = json_out(["conformance", "run", tmp_path / "wrong.json", "--json"],
                    "conformance-run", code=1)
    assert (data["passed"], data["failed"]) == (0, 1)


def test_params_json():
    listed = json_out(["params", "list", "--json"], "params-list")
    assert "deribit-pm" in {p["name"] for p in listed["presets"]}
    shown = json_out(["params", "show", "okx-pm"], "params-show")
    assert shown["name"] == "okx-pm"
    json_out(["params", "show", "okx-pm", "--json"], "params-show")


def test_params_validate_json(tmp_path):
    good = (Path(__file__).resolve().parents[1] / "src" / "pmargin" / "models" / "presets"
            / "span.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = 'nonsense'\n")
    data = json_out(["params", "validate", good, "--json"], "params-validate")
    assert data["valid"] is True
    data = json_out(["params", "validate", good, bad, "--json"], "params-validate", code=2)
    assert [f["valid"] for f in data["files"]] == [True, False]
    assert data["files"][1]["error"]


@pytest.mark.data
@pytest.mark.slow
def test_bench_book_json():
    shared_path("data", "deribit")
    data = json_out(["bench", "book", "--accounts", "30", "--runs", "1", "--json"], "bench-book")
    assert data["accounts"] == 30
