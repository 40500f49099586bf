"""Audit benchmark: the liquidation-proximity curve (61 index moves) of a 100,000-account book.

Run by ``make bench`` (through ``benchmarks/run.py``) in its own process; prints one JSON object.
The book is generated on the latest Deribit BTC chain. Timed: building the 61 moved markets
(once, shared by every methodology), then per methodology one book-engine preparation and
evaluation of every account per move. Wall and CPU (process) time are both given: on a shared
machine the wall time includes waiting for a core. Numba is warmed on a small book first.
"""

from __future__ import annotations

import json
import os
import sys
import time


def run(accounts: int = 100_000, models: tuple[str, ...] = ("deribit-pm", "deribit-sm")
        ) -> dict[str, object]:
    """Time the proximity curve of ``accounts`` accounts under each of ``models``.

    Parameters
    ----------
    accounts : int
        Accounts in the generated book.
    models : tuple of str
        Methodologies.

    Returns
    -------
    dict
        Seconds (wall and CPU) of the moved markets and of each model's curve.
    """
    from pmargin.analytics.audit import (
        book_exposure,
        curve_markets,
        load_audit_params,
        proximity_curve,
    )
    from pmargin.demo import demo_market
    from pmargin.engine import BookEngine
    from pmargin.models import load_model
    from pmargin.synthetic import chain_universe, generate_book

    market, source = demo_market()
    universe = chain_universe(market, "BTC")
    for name in models:  # warm-up: Numba compilation and caches
        load_model(name).compute(generate_book(market, universe, 50, seed=0), market)
    book = generate_book(market, universe, accounts, seed=1)
    moves = load_audit_params().curve.moves()
    t0, c0 = time.perf_counter(), time.process_time()
    markets = curve_markets(market, moves)
    out: dict[str, object] = {
        "accounts": accounts, "positions": int(book.positions.nnz), "moves": int(moves.size),
        "market": source, "markets_s": time.perf_counter() - t0,
        "markets_cpu_s": time.process_time() - c0, "models": {},
    }
    per: dict[str, object] = {}
    for name in models:
        t0, c0 = time.perf_counter(), time.process_time()
        engine = BookEngine(load_model(name), book, market)
        exposure = book_exposure(book, market, engine.result)
        curve, _ = proximity_curve(engine, markets, moves, exposure)
        per[name] = {"curve_s": time.perf_counter() - t0,
                     "curve_cpu_s": time.process_time() - c0,
                     "share_accounts_at_-60%": float(curve.share_accounts[0]),
                     "share_accounts_at_0": float(curve.share_accounts[moves.size // 2]),
                     "share_accounts_at_+60%": float(curve.share_accounts[-1])}
    out["models"] = per
    out["load_average"] = os.getloadavg()[0]
    out["threads"] = os.environ.get("NUMBA_NUM_THREADS", str(os.cpu_count()))
    return out


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    names = tuple(sys.argv[2:]) or ("deribit-pm", "deribit-sm")
    print(json.dumps(run(n, names)))
