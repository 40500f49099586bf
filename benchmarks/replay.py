"""Replay of hourly history into a real ``pmargin serve`` process (issue 11 target).

Seeds a venue of ``--accounts`` generated accounts (``seed_demo``) on the history market of
``--from`` (``pmargin.analytics.history.market_at``, long tenors so that every held instrument
outlives the replay), starts the server on it (SQLite, 127.0.0.1), then plays ``--hours`` hourly
BTC markets into it as fast as they are accepted (``pmargin.feeds.replay``: the markets are built
in ``--workers`` processes ahead of the sender; each update lists the held instruments plus the
standard 7/30/90-day ones). Per update the client measures the round trip of ``POST
/v1/market``: the service answers once every account is re-margined and the epoch summary is
stored, so the round trip is the epoch latency as the client sees it (without attestation: not
built on this branch). Bounded by ``--hours``; the year (8,760 updates) is extrapolated from the
rate when fewer are played. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED_TENORS = (366, 400, 450)  # days: every seeded instrument outlives a one-year replay
SEED_MONEYNESS = (0.7, 0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.3, 1.4)


def seed(db_url: str, accounts: int, start: datetime) -> dict[str, Any]:
    """Seed the venue on the history market of ``start``; keys and held instruments."""
    from pmargin.analytics.history import market_at, standard_instruments
    from pmargin.service.server import open_service, seed_demo

    t0 = time.perf_counter()
    # strikes across the smile (the delta strikes of a year's tenor are far out of the money)
    grid = standard_instruments("BTC", start, SEED_TENORS, moneyness=SEED_MONEYNESS)
    mkt = market_at("BTC", start, tenors_days=SEED_TENORS, instruments=grid.values())
    svc = open_service(db_url)
    events = seed_demo(svc, accounts, {"format": "json", "market": mkt.to_dict()})
    bs = svc.state.books["BTC"]
    held = sorted({n for row in bs.positions.values() for n in row})
    key = svc.store.create_key("operator", None)
    out = {"events": events, "held": held, "key": key, "seed_s": time.perf_counter() - t0,
           "positions": sum(len(r) for r in bs.positions.values()), "source": mkt.source}
    svc.store.engine.dispose()
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    from service_load import Server  # benchmarks/ is sys.path[0] when run as a script

    from pmargin.feeds.replay import ReplayFeed, history_builder, replay_into, replay_times

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--hours", type=int, default=8_760, help="updates to play (bound)")
    ap.add_argument("--from", dest="start", default="2025-01-01")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cli", action="store_true",
                    help="replay through the `pmargin replay` command (a subprocess)")
    a = ap.parse_args()
    start = datetime.fromisoformat(a.start).replace(tzinfo=UTC)
    tmp = Path(tempfile.mkdtemp(prefix="pm-replay-"))
    db_url = f"sqlite:///{tmp / 'svc.db'}"
    try:
        s = seed(db_url, a.accounts, start)
        venue = ROOT / "src" / "pmargin" / "service" / "venue.toml"
        srv = Server(db_url, venue, tmp)
        try:
            times = replay_times(start, start + timedelta(hours=a.hours - 1))
            feed = ReplayFeed(times, history_builder("BTC", s["held"]), "replay:BTC-history",
                              workers=a.workers)
            load0 = os.getloadavg()[0]
            cpu0, me0 = cpu_s(srv.proc.pid), time.process_time()
            if a.cli:
                held = tmp / "held.txt"
                held.write_text("\n".join(s["held"]) + "\n")
                cmd = ["pmargin", "replay", "--asset", "BTC", "--from", times[0].isoformat(),
                       "--to", times[-1].isoformat(), "--speed", "max", "--url", srv.url,
                       "--instruments", str(held), "--workers", str(a.workers), "--json"]
                out = subprocess.run([sys.executable, "-m", "pmargin.cli", *cmd[1:]],
                                     env={**os.environ, "PMARGIN_KEY": s["key"]},
                                     capture_output=True, text=True, check=True)
                summ = json.loads(out.stdout)
                command = " ".join(cmd).replace(srv.url, "$URL").replace(str(held), "held.txt")
            else:
                summ = replay_into(feed, srv.url, s["key"], None).summary()
                command = "library (pmargin.feeds.replay.replay_into)"
            server_cpu = cpu_s(srv.proc.pid) - cpu0
            client_cpu = time.process_time() - me0
            rss = srv.rss_mb()
            deadline = time.monotonic() + 60  # the last epoch's attestation may still run
            while True:
                attested = latest_attestation(srv.url, s["key"])
                vt = attested["valuation_time"]
                if summ["last"] is None or time.monotonic() > deadline or (
                        vt is not None and datetime.fromisoformat(str(vt))
                        == datetime.fromisoformat(summ["last"])):
                    break
                time.sleep(0.5)
        finally:
            srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = summ["accepted_per_s"] or float("nan")
    print(json.dumps({
        "accounts": a.accounts, "positions": s["positions"], "held_instruments": len(s["held"]),
        "seed_events": s["events"], "seed_s": round(s["seed_s"], 1),
        "server_start_s": round(srv.start_s, 1), "updates": len(times),
        "from": times[0].isoformat(), "to": times[-1].isoformat(), "workers": a.workers,
        **{k: v for k, v in summ.items() if k != "refusals"}, "refusals": summ["refusals"][:2],
        "year_extrapolated_s": round(8760 / rate, 1) if rate == rate else None,
        # CPU per update: less sensitive than wall time to the other work on the machine
        "server_cpu_ms_per_update": round(1e3 * server_cpu / max(len(times), 1), 1),
        "client_cpu_ms_per_update": round(1e3 * client_cpu / max(len(times), 1), 1),
        "year_server_cpu_s": round(8760 * server_cpu / max(len(times), 1), 1),
        "server_rss_mb": round(rss), "load_average_start": round(load0, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # every accepted update is an epoch: the last one attested means all were
        "attested": attested["valuation_time"] is not None and summ["last"] is not None
        and datetime.fromisoformat(str(attested["valuation_time"]))
        == datetime.fromisoformat(summ["last"]),
        "attested_epoch": attested["epoch"], "via": command}))


def latest_attestation(url: str, key: str) -> dict[str, object]:
    """Epoch and valuation time of the service's latest signed attestation (None if none)."""
    import httpx

    r = httpx.get(f"{url}/v1/attestations/latest", timeout=60,
                  headers={"Authorization": f"Bearer {key}"})
    if r.status_code != 200:
        return {"epoch": None, "valuation_time": None}
    doc = r.json()
    body = doc.get("attestation", doc)
    return {"epoch": body.get("epoch"), "valuation_time": body.get("valuation_time")}


if __name__ == "__main__":
    main()
