"""Numba kernels compile once per install: the second process loads them from the disk cache.

Each run is a fresh interpreter with its own ``NUMBA_CACHE_DIR``; ``NUMBA_DEBUG_CACHE`` makes
Numba report every cache save and load.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
from pmargin.liquidation.execution import takeover_account
from pmargin.models import load_model
from tests.factories import expiry_code, make_market, pf

m = make_market()
p = pf("BTC", [(f"BTC-{expiry_code(30)}-72000-P", -5), ("BTC-PERPETUAL", 0.5)], {"BTC": 0.3})
model = load_model("deribit-pm")
print("IM", model.margin(p, m).initial_margin)
print("takeover", takeover_account(p, m, model).fraction_sold)
"""


def run(cache_dir):
    env = {k: v for k, v in os.environ.items() if k != "PMARGIN_DISABLE_NUMBA"}
    env.update(NUMBA_CACHE_DIR=str(cache_dir), NUMBA_DEBUG_CACHE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_fused_book_kernel_is_cached_and_reloaded(tmp_path):
    # the fused book pass (one build serving serial and parallel rows) is cached on disk
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    saved = [line for line in first.stdout.splitlines() if line.startswith("[cache] data saved")]
    assert any("_rows_py" in line for line in saved), first.stdout

    second = run(tmp_path)  # a crash here (SIGSEGV) would be a bad cached kernel
    assert second.returncode == 0, second.stderr[-2000:]
    out = second.stdout.splitlines()
    assert not [line for line in out if line.startswith("[cache] data saved")], second.stdout
    loaded = [line for line in out if line.startswith("[cache] data loaded")]
    assert any("_rows_py" in line for line in loaded)
    # the same figures from the cached machine code as from the fresh compile
    assert [x for x in out if not x.startswith("[")] == [
        x for x in first.stdout.splitlines() if not x.startswith("[")]
