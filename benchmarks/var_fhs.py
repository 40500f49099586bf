"""var-fhs on a generated book: full recompute time and where it goes (issue 12 target: 100k
accounts, >= 1,000 historical scenarios, <= 10 s on the 2-core machine).

Run: ``python benchmarks/var_fhs.py [ACCOUNTS]``; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def main(accounts: int = 100_000) -> dict[str, object]:
    from pmargin.demo import latest_snapshot
    from pmargin.market.loaders import load_market
    from pmargin.models import load_model
    from pmargin.models.var_fhs.model import CHUNK_ROWS
    from pmargin.synthetic import chain_universe, generate_book

    snap = latest_snapshot()
    if snap is None:
        return {"skipped": "no Deribit snapshot in ../shared/data/deribit"}
    market = load_market(snap)
    book = generate_book(market, chain_universe(market, "BTC"), accounts, seed=7)
    model = load_model("var-fhs")
    t0 = time.perf_counter()
    model.prepare(book, market)                 # first: reads and filters the history
    t1 = time.perf_counter()
    times = []
    for _ in range(3):
        a = time.perf_counter()
        prep = model.prepare(book, market)      # per market update: revalue the risk matrix
        b = time.perf_counter()
        res = model.evaluate(prep, book)        # every account: P&L matrix and ES, in chunks
        c = time.perf_counter()
        times.append((b - a, c - b))
    prep_s = float(np.median([t[0] for t in times]))
    eval_s = float(np.median([t[1] for t in times]))
    return {
        "accounts": accounts, "positions": int(book.positions.nnz),
        "instruments": book.n_instruments, "scenarios": prep.scenarios.size,
        "stressed_scenarios": int(prep.scenarios.stressed.sum()),
        "first_prepare_s": t1 - t0, "prepare_s": prep_s, "evaluate_s": eval_s,
        "recompute_s": prep_s + eval_s, "chunk_rows": CHUNK_ROWS,
        "im_total_btc": float(res.initial_margin.sum()),
        "load_average": os.getloadavg()[0], "market": snap.name,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(main(n)))
