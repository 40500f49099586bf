"""Liquidation benchmark: 10,000 accounts under maintenance margin planned and executed.

Run by ``make bench`` (through ``benchmarks/run.py``) in its own process; prints one JSON object.
The book is generated on the latest Deribit BTC chain, shocked by -30 % and cut to the first
``accounts`` accounts below maintenance margin; one cascade round (margin every account, plan
every liquidation in one vectorised pass, post penalties, execution costs and bankruptcy cover
to the Decimal ledger) is timed after a warm-up on a small book (Numba compilation excluded).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def run(accounts: int = 10_000, preset: str = "deribit-pm",
        shock: float = -0.3) -> dict[str, object]:
    """Measure the planning and execution of ``accounts`` liquidations.

    Parameters
    ----------
    accounts : int
        Accounts below maintenance margin to liquidate.
    preset : str
        Margin model.
    shock : float
        Relative BTC move.

    Returns
    -------
    dict
        Timings (seconds) and what was done.
    """
    from pmargin.demo import demo_market
    from pmargin.liquidation.cascade import load_cascade_params, run_cascade
    from pmargin.liquidation.planner import plan_book
    from pmargin.models import load_model
    from pmargin.synthetic import chain_universe, generate_book

    market, label = demo_market()
    model = load_model(preset)
    shocked = market.bumped({"BTC": shock})
    universe = chain_universe(market, "BTC")
    candidates = generate_book(market, universe, int(accounts * 6), seed=5)
    res = model.compute(candidates, shocked)
    under = np.flatnonzero((res.equity < res.maintenance_margin)
                           & (np.diff(candidates.positions.indptr) > 0))
    if under.size < accounts:
        raise SystemExit(f"only {under.size} accounts under MM; generate a larger book")
    book = candidates.subset(under[:accounts])
    # warm-up: compile the kernels on a small book
    plan_book(book.subset(np.arange(50)), shocked, model)
    params = load_cascade_params().model_copy(update={"max_rounds": 1})
    t0 = time.perf_counter()
    plan = plan_book(book, shocked, model)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = run_cascade(book, shocked, model, 0.0, params=params)
    round_s = time.perf_counter() - t0
    first = result.rounds[0]
    return {
        "market": label,
        "preset": preset,
        "accounts_under_mm": int(accounts),
        "positions": int(book.positions.nnz),
        "plan_s": round(plan_s, 3),
        "plan_and_execute_s": round(round_s, 3),
        "greedy_steps": int(plan.step_account.size),
        "accounts_restored": int(np.sum(plan.equity >= plan.maintenance_margin)),
        "accounts_bankrupt": int(np.sum(plan.equity < 0)),
        "accounts_stuck": int(plan.stuck.sum()),
        "liquidated_notional_usd": first.liquidated_notional_usd,
        "bad_debt_usd": first.bad_debt_usd,
        "conservation_error": str(result.conservation_error),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PMARGIN_LIQ_ACCOUNTS",
                                                                        "10000"))
    print(json.dumps(run(n)))
