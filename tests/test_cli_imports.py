"""Starting the CLI is light: heavy libraries are imported only by the commands that need them."""

import json
import os
import subprocess
import sys

HEAVY = ["numpy", "pandas", "scipy", "numba", "matplotlib", "rich.console", "pydantic"]


def loaded_after(code):
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"],
        capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    assert loaded_after("import pmargin.cli") == []


def test_version_loads_no_heavy_library():
    code = ("import sys\nfrom pmargin.cli import app\n"
            "try:\n    app(['--version'])\nexcept SystemExit:\n    pass")
    assert loaded_after(code) == []


def test_single_account_commands_do_not_start_numba(tmp_path):
    """One account: the NumPy reference runs; Numba's start-up costs more than the work."""
    code = f"""
import json, os
from tests.factories import make_market, expiry_code
from pmargin.cli import app
d = {str(tmp_path)!r}
open(d + "/m.json", "w").write(json.dumps(make_market().to_dict()))
open(d + "/p.json", "w").write(json.dumps({{"margin_currency": "BTC", "collateral": {{"BTC": 1}},
    "positions": [{{"instrument": "BTC-" + expiry_code(30) + "-72000-P", "quantity": -1}}]}}))
try:
    app(["margin", d + "/p.json", "-m", d + "/m.json", "--model", "deribit-pm", "--json"])
except SystemExit as e:
    assert e.code == 0, e.code
assert "PMARGIN_DISABLE_NUMBA" not in os.environ  # restored after the command
"""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PMARGIN_DISABLE_NUMBA"}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('numba' in sys.modules)"],
        capture_output=True, text=True, timeout=300, cwd=root, env={**env, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_margin_json_on_a_deribit_chain_does_not_import_pandas(tmp_path):
    """``pmargin margin --json`` on a Deribit CSV (the CLI latency benchmark, issue 8.11): the
    chain is read with csv+gzip and the explanation tables stay columns, so pandas (about 0.2 s
    of a 0.5 s command) is never imported; reading ``by_position`` still gives a DataFrame."""
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    rows = [
        "timestamp,instrument_name,underlying,strike,mark_price,implied_volatility,currency,"
        "index_price",
        "2026-08-22T15:33:51+00:00,BTC-25SEP26-100000-C,77405.28,100000,0.004,0.45,BTC,77081.8",
        "2026-08-22T15:33:51+00:00,BTC-25SEP26-70000-P,77405.28,70000,0.012,0.5,BTC,77081.8",
    ]
    market = tmp_path / "chain.csv"
    market.write_text("\n".join(rows) + "\n")
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"margin_currency": "BTC", "collateral": {"BTC": 1},
                              "positions": [{"instrument": "BTC-25SEP26-100000-C",
                                             "quantity": -1}]}))
    for model in ("deribit-pm", "deribit-sm"):
        code = f"""
from pmargin.cli import app
try:
    app(["margin", {str(pf)!r}, "-m", {str(market)!r}, "--model", {model!r}, "--json",
         "--as-of", "2026-08-22T15:33:51Z"])
except SystemExit as e:
    assert e.code == 0, e.code
"""
        env = {k: v for k, v in os.environ.items() if k != "PMARGIN_DISABLE_NUMBA"}
        out = subprocess.run(
            [sys.executable, "-c", f"{code}\nimport sys, json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"],
            capture_output=True, text=True, timeout=300, cwd=root, env=env)
        assert out.returncode == 0, out.stderr
        loaded = json.loads(out.stdout.strip().splitlines()[-1])
        printed = json.loads(out.stdout[:out.stdout.rindex("\n[")])
        assert printed["positions"][0]["instrument"] == "BTC-25SEP26-100000-C"
        assert "pandas" not in loaded, model
        assert "numba" not in loaded, model
    # the same result read as tables builds DataFrames on demand
    from pmargin.market.loaders import load_market
    from pmargin.models import load_model
    from pmargin.portfolio import load_portfolio

    res = load_model("deribit-pm").margin(load_portfolio(pf), load_market(
        market, valuation_time="2026-08-22T15:33:51Z"))
    assert isinstance(res.by_position, pd.DataFrame)
    assert list(res.by_position.index) == ["BTC-25SEP26-100000-C"]
    assert isinstance(res.scenarios, pd.DataFrame)
    assert len(res.scenarios) > 0
    assert isinstance(res.risk_matrix, pd.DataFrame)
    assert res.to_dict()["positions"] == res.by_position.reset_index().to_dict(orient="records")
