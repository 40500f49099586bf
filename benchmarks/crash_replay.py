"""Crash-replay benchmark: every episode x asset x regime on a generated book (issue 13).

Runs ``pmargin replay-crash all --accounts N --jobs J --json`` in a child process (the command a
user runs) and prints one JSON object: wall time, CPU time of the child and its workers
(``RUSAGE_CHILDREN``: user + system), the 1-minute load average before and after (the machine
may be shared), the summed wall time of each regime's replays, the rows that did not run and why,
and the money checks (every replay's conservation error, the largest ledger-equity gap).

Usage: ``python benchmarks/crash_replay.py [ACCOUNTS] [JOBS] [ROWS_FILE]`` (default 10,000
accounts, 2 jobs; ``ROWS_FILE`` keeps the command's JSON output).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(accounts: int = 10_000, jobs: int = 2, rows_file: str | None = None) -> dict[str, Any]:
    """Time the replays of every episode, asset and regime; see the module doc."""
    cmd = [sys.executable, "-m", "pmargin.cli", "replay-crash", "all", "--accounts",
           str(accounts), "--jobs", str(jobs), "--json"]
    load0 = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load1 = os.getloadavg()[0]
    if rows_file:
        Path(rows_file).write_text(out.stdout)
    rows = json.loads(out.stdout)["replays"]
    by_regime: dict[str, float] = {}
    for r in rows:
        by_regime[r["regime"]] = by_regime.get(r["regime"], 0.0) + r["seconds"]
    ran = [r for r in rows if not r["reason"]]
    return {
        "command": " ".join(["pmargin", *cmd[3:]]),
        "accounts": accounts, "jobs": jobs, "rows": len(rows), "rows_run": len(ran),
        "not_run": [f"{r['episode']} {r['asset']} {r['regime']}: {r['reason']}"
                    for r in rows if r["reason"]],
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "load_average_start": load0, "load_average_end": load1,
        "regime_seconds": dict(sorted(by_regime.items(), key=lambda kv: -kv[1])),
        "conservation_errors": sorted({r["conservation_error"] for r in ran}),
        "ledger_equity_max_error": max((r["ledger_equity_max_error"] for r in ran), default=0.0),
        "threads": os.environ.get("NUMBA_NUM_THREADS", "default"),
    }


if __name__ == "__main__":
    a = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    j = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(json.dumps(run(a, j, sys.argv[3] if len(sys.argv) > 3 else None)), flush=True)
