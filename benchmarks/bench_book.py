"""Book benchmark: full recompute versus its floor, a per-account loop, and what-if latency.

Run by ``make bench`` (through ``benchmarks/run.py``), ``pmargin bench book`` (a thin wrapper
that loads this file from the source checkout) or ``python benchmarks/bench_book.py``. Timings
are wall-clock medians on this machine; every figure is measured in the same run so ratios are
meaningful.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin.engine.book_engine import BookEngine
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.models.registry import load_model
from pmargin.synthetic import generate_book

__all__ = ["BenchResult", "bench_book", "machine_info", "run_book_bench"]


@dataclass(frozen=True)
class BenchResult:
    """Figures of one benchmark run (keys match ``pmargin bench book --json``)."""

    preset: str
    accounts: int
    positions: int
    instruments: int
    scenarios: int
    generate_s: float
    risk_array_s: float
    evaluate_s: float
    recompute_s: float
    floor_s: float
    ratio_to_floor: float
    loop_sample: int
    loop_per_account_s: float
    loop_extrapolated_s: float
    speedup_vs_loop: float
    what_if_positions: int
    what_if_p50_us: float
    what_if_p99_us: float
    peak_rss_mb: float
    max_rel_diff: float
    runs: int
    threads: int
    load_avg: float


def machine_info() -> dict[str, Any]:
    """Describe the machine (CPU model, cores, memory, Python)."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import psutil

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def _threads() -> int:
    """Threads the kernels may use (Numba's, from ``NUMBA_NUM_THREADS``; 1 without Numba)."""
    from pmargin import _numba

    if not _numba.NUMBA_ENABLED:
        return 1
    return int(_numba.numba.get_num_threads())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_book_bench(market: MarketSnapshot, instruments: list[Any], accounts: int,
                   preset: str = "deribit-pm", runs: int = 5, loop_sample: int = 200,
                   seed: int = 7, model: MarginModel | None = None) -> BenchResult:
    """Generate a book and measure everything :class:`BenchResult` lists.

    Parameters
    ----------
    market : MarketSnapshot
        Market (a real Deribit snapshot in ``make bench``).
    instruments : list of Instrument
        Instrument universe of the book.
    accounts : int
        Number of accounts.
    preset : str
        Margin model preset.
    runs : int
        Repetitions of the full recompute (the median is reported).
    loop_sample : int
        Accounts computed one by one for the loop reference and the difference check.
    seed : int
        Book generator seed.
    model : MarginModel, optional
        Use this model instead of loading ``preset``.

    Returns
    -------
    BenchResult
        Figures of this run.
    """
    mdl = model or load_model(preset)
    t0 = time.perf_counter()
    book = generate_book(market, instruments, accounts, seed=seed)
    gen_s = time.perf_counter() - t0
    engine = BookEngine(mdl, book, market)
    units = getattr(engine.prep, "units", None)
    n_scen = max((u.grid.size for u in units), default=1) if units else 1
    # floor: one sparse product of the same shape (positions x per-unit-P&L matrix), scipy,
    # single-threaded, plus the row minimum
    r_mat = np.random.default_rng(0).standard_normal((book.n_instruments, n_scen))
    q = sp.csr_matrix(book.positions)
    prep_times, eval_times, floor_times = [], [], []
    for _ in range(runs):  # recompute and floor alternate, so both see the same machine load
        t0 = time.perf_counter()
        prep = mdl.prepare(book, market)
        t1 = time.perf_counter()
        res = mdl.evaluate(prep, book)
        t2 = time.perf_counter()
        out = q @ r_mat
        out.min(axis=1)
        t3 = time.perf_counter()
        prep_times.append(t1 - t0)
        eval_times.append(t2 - t1)
        floor_times.append(t3 - t2)
        del out
    risk_s = statistics.median(prep_times)
    eval_s = statistics.median(eval_times)
    recompute_s = statistics.median([a + b for a, b in zip(prep_times, eval_times, strict=True)])
    floor_s = statistics.median(floor_times)
    # per-account loop on a sample, and max difference against the book
    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(book.n_accounts, size=min(loop_sample, book.n_accounts), replace=False)
    max_rel = 0.0
    t0 = time.perf_counter()
    singles = [mdl.margin(book.portfolio(int(r)), market) for r in sample]
    loop_s = (time.perf_counter() - t0) / max(len(sample), 1)
    for r, one in zip(sample, singles, strict=True):
        for got, want in ((res.initial_margin[r], one.initial_margin),
                          (res.maintenance_margin[r], one.maintenance_margin),
                          (res.equity[r], one.equity)):
            denom = max(abs(want), 1e-12)
            max_rel = max(max_rel, abs(got - want) / denom if abs(got - want) > 1e-12 else 0.0)
    loop_total = loop_s * book.n_accounts
    # what-if latency on an account holding exactly 50 positions (49 options + the perpetual)
    acc = book.account_ids[0]
    row0 = book.positions[0]
    for j, q in zip(row0.indices, row0.data, strict=True):  # flatten it first
        engine.apply_trade(acc, book.instruments[j], -float(q), float(engine.prep.table.mark[j]))
    t = engine.prep.table
    opts = np.flatnonzero(t.kind == 2)
    pick = rng.choice(opts, size=min(49, opts.size), replace=False)
    perp = [j for j, i in enumerate(book.instruments) if i.name.endswith("PERPETUAL")]
    for j in [*pick.tolist(), *perp[:1]]:
        engine.apply_trade(acc, book.instruments[j], float(rng.choice([-1.0, 1.0])),
                           float(t.mark[j]))
    wi_positions = int(engine._row_arrays(0)[0].size)
    lat = []
    for k in range(320):
        col = int(pick[k % pick.size])
        t0 = time.perf_counter()
        engine.what_if(acc, [(book.instruments[col], 0.5, float(t.mark[col]))])
        lat.append(time.perf_counter() - t0)
    lat_us = np.array(lat[20:]) * 1e6
    return BenchResult(
        preset=mdl.name, accounts=book.n_accounts, positions=int(book.positions.nnz),
        instruments=book.n_instruments, scenarios=n_scen, generate_s=gen_s,
        risk_array_s=risk_s, evaluate_s=eval_s, recompute_s=recompute_s, floor_s=floor_s,
        ratio_to_floor=recompute_s / floor_s if floor_s > 0 else float("inf"),
        loop_sample=len(sample), loop_per_account_s=loop_s, loop_extrapolated_s=loop_total,
        speedup_vs_loop=loop_total / recompute_s if recompute_s > 0 else float("inf"),
        what_if_positions=wi_positions,
        what_if_p50_us=float(np.percentile(lat_us, 50)),
        what_if_p99_us=float(np.percentile(lat_us, 99)),
        peak_rss_mb=_rss_mb(), max_rel_diff=max_rel, runs=runs, threads=_threads(),
        load_avg=os.getloadavg()[0],
    )


def as_dict(result: BenchResult) -> dict[str, Any]:
    """Return the figures as a plain dictionary."""
    return asdict(result)


def bench_book(accounts: int, preset: str = "deribit-pm", runs: int = 5) -> dict[str, Any]:
    """Run the book benchmark on the demo market's BTC chain (``pmargin bench book``).

    Parameters
    ----------
    accounts : int
        Number of accounts.
    preset : str
        Margin model preset.
    runs : int
        Repetitions of the full recompute.

    Returns
    -------
    dict
        The :class:`BenchResult` fields plus ``numba`` (whether the Numba kernels ran).
    """
    from pmargin._numba import NUMBA_ENABLED
    from pmargin.demo import demo_market
    from pmargin.synthetic import chain_universe

    market, _ = demo_market()
    res = asdict(run_book_bench(market, chain_universe(market, "BTC"), accounts, preset=preset,
                                runs=runs))
    res["numba"] = NUMBA_ENABLED
    return res


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python benchmarks/bench_book.py --accounts N [--preset P] [--runs R]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--preset", default="deribit-pm")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(bench_book(args.accounts, preset=args.preset, runs=args.runs)))


if __name__ == "__main__":
    main()
