"""Full backtest benchmark (issue 12 target: <= 10 minutes on 2 cores), one JSON line per asset.

``python benchmarks/backtest.py [ASSET ...] [--jobs N] [--report DIR]``: every standard
portfolio x every model x every day of the history x the 1- and 2-day horizons. Prints the
wall time, the CPU time of this process and its workers, the time per stage (summed over the
workers: market building, portfolio building, each model, revaluation) and the load average,
because the machine may be shared.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def bench(asset: str, jobs: int, report: Path | None) -> dict[str, object]:
    """Run one full backtest and return its figures."""
    from pmargin.analytics.backtest import BacktestSpec, run_backtest
    from pmargin.analytics.history import load_series, load_template

    t0 = time.perf_counter()
    series, template = load_series(asset), load_template(asset)
    load_s = time.perf_counter() - t0
    la0 = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = run_backtest(BacktestSpec(asset=asset), series=series, template=template, jobs=jobs)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
           + c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
    out: dict[str, object] = {
        "asset": asset, "days": len(res.dates), "first_day": res.dates[0].isoformat(),
        "last_day": res.dates[-1].isoformat(), "models": len(res.models),
        "portfolios": len(res.portfolios), "horizons": list(res.loss),
        "jobs": res.jobs, "wall_s": res.wall_seconds, "rusage_cpu_s": cpu, "load_s": load_s,
        "stages_s": dict(sorted(res.cpu_seconds.items(), key=lambda kv: -kv[1])),
        "stages_wall_s": dict(sorted(res.timings.items(), key=lambda kv: -kv[1])),
        "load_average_start": la0, "load_average_end": os.getloadavg()[0],
        "skipped": res.skipped, "errors": res.errors,
    }
    print(json.dumps(out), flush=True)  # the figures first: a report failure cannot lose them
    if report is not None:
        from pmargin.analytics.report import write_report

        report.mkdir(parents=True, exist_ok=True)
        write_report(res, report / asset.lower())
    return out


def main(argv: list[str]) -> None:
    """Parse the arguments and print one JSON line per asset."""
    jobs, report, assets = 2, None, []
    it = iter(argv)
    for a in it:
        if a == "--jobs":
            jobs = int(next(it))
        elif a == "--report":
            report = Path(next(it))
        else:
            assets.append(a.upper())
    for asset in assets or ["BTC"]:
        bench(asset, jobs, report)


if __name__ == "__main__":
    main(sys.argv[1:])
