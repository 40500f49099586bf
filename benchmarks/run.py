"""``make bench``: book benchmarks at 10k, 100k and 1M accounts, written to docs/benchmarks.md.

Every figure of one row comes from the same process and the same run, so ratios (to the sparse
product floor, to the per-account loop) compare like with like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = [int(x) for x in os.environ.get("PMARGIN_BENCH_SIZES", "10000,100000,1000000").split(",")]


def run(accounts: int, preset: str) -> dict[str, object]:
    """Run one benchmark in a fresh process (so peak RSS is that run's own)."""
    out = subprocess.run(
        [sys.executable, "-m", "pmargin.cli", "bench", "book", "--accounts", str(accounts),
         "--preset", preset, "--json"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    """Run every size and write the Markdown report."""
    from pmargin.book.bench import machine_info

    rows = []
    for n in SIZES:
        for preset in ("deribit-pm",):
            r = run(n, preset)
            print(json.dumps(r), flush=True)
            rows.append(r)
    m = machine_info()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
        f"NumPy {m['numpy']}, {m['platform']}. Numba "
        f"{'enabled' if rows and rows[0].get('numba') else 'disabled'}.",
        "",
        "Book: `pmargin.book.generator` on the latest Deribit BTC chain (1,051 instruments), "
        "BTC-margined accounts. *recompute* = risk arrays + every account (median of 5); "
        "*floor* = one scipy sparse product of the same positions matrix with a dense "
        "instruments x scenarios matrix, plus the row minimum (scipy, single-threaded), "
        "measured in the same run, alternating with the recompute (median of 5); *threads* = "
        "threads the book kernel may use (`NUMBA_NUM_THREADS`); *load* = 1-minute load "
        "average when the run ended (the machine may be shared); "
        "*loop* = each account margined alone with `model.margin` on a sample of 200, "
        "extrapolated; *what-if* = `BookEngine.what_if` of one fill on a 50-position account.",
        "",
        "| accounts | positions | scenarios | risk arrays s | recompute s | floor s "
        "| ratio to floor | loop (extrapolated) s | speed-up vs loop | what-if p50 us "
        "| what-if p99 us | peak RSS MB | max rel diff | threads | load |",
        "|" + "---|" * 15,
    ]
    for r in rows:
        lines.append(
            f"| {r['accounts']:,} | {r['positions']:,} | {r['scenarios']} | "
            f"{r['risk_array_s']:.4f} | {r['recompute_s']:.3f} | {r['floor_s']:.3f} | "
            f"{r['ratio_to_floor']:.2f} | {r['loop_extrapolated_s']:,.0f} | "
            f"{r['speedup_vs_loop']:,.0f} | {r['what_if_p50_us']:.0f} | "
            f"{r['what_if_p99_us']:.0f} | {r['peak_rss_mb']:,.0f} | {r['max_rel_diff']:.1e} | "
            f"{r.get('threads', '')} | {r.get('load_avg', float('nan')):.1f} |"
        )
    lines += ["", "Raw JSON of each run:", "", "```"] + [json.dumps(r) for r in rows] + ["```", ""]
    notes = ROOT / "docs" / "benchmarks-notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines))
    print("written docs/benchmarks.md")


if __name__ == "__main__":
    main()
