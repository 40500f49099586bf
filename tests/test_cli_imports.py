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
