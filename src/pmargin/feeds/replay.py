"""The replay feed: history played into a running service, at any speed.

:class:`ReplayFeed` yields one market per step (hourly by default) between two times, each built
by a builder callable; :func:`history_builder` is the project's one history-market builder
(:func:`pmargin.analytics.history.market_at`: the index at that hour, the smile template fitted
on the Deribit chains scaled to that day's DVOL). :func:`replay_into` posts the updates to
``POST /v1/market`` of a service (the HTTP feed, so the same guards apply), pacing them so that
``speed`` seconds of history pass per second of wall time (``None``: as fast as they are
accepted), and measures each round trip: the service answers once every account is re-margined
and the epoch summary is stored, so the round trip is the epoch latency as the client sees it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np

from pmargin.conventions import ensure_utc
from pmargin.errors import InvalidInput
from pmargin.feeds.base import Feed, MarketUpdate, check_source, make_update, payload_from_market
from pmargin.market import MarketSnapshot

__all__ = ["HistoryBuilder", "ReplayFeed", "ReplayResult", "history_builder", "parse_speed",
           "parse_when", "replay_into", "replay_times"]

Builder = Callable[[datetime], MarketSnapshot]


def replay_times(start: datetime, end: datetime, step: timedelta = timedelta(hours=1)
                 ) -> list[datetime]:
    """The times of a replay: ``start``, ``start + step``, ... up to ``end`` inclusive.

    Parameters
    ----------
    start, end : datetime
        Aware UTC times, ``start <= end``.
    step : timedelta, optional
        Positive step (default one hour).

    Returns
    -------
    list of datetime
        ``floor((end - start) / step) + 1`` times.
    """
    s, e = ensure_utc(start, "from"), ensure_utc(end, "to")
    if e < s:
        raise InvalidInput("to", e.isoformat(), f"is before --from ({s.isoformat()})")
    if step <= timedelta(0):
        raise InvalidInput("step", str(step), "must be positive")
    n = int((e - s) / step) + 1
    return [s + k * step for k in range(n)]


class HistoryBuilder:
    """Builder of history markets (the project's one builder, :mod:`pmargin.analytics.history`).

    Picklable (the history is loaded on first use in each process), so a replay can build its
    markets in a worker process while the service works.

    Parameters
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"``.
    instruments : iterable of str, optional
        Instruments listed in every market besides the standard ones (those the service's
        accounts hold: a market that does not list a held instrument is refused); an instrument
        is listed only while it is alive.
    tenors_days : sequence of int, optional
        Tenors of the standard instruments (default: the builder's).
    """

    def __init__(self, asset: str, instruments: Iterable[str] = (),
                 tenors_days: Sequence[int] | None = None) -> None:
        from pmargin.instruments import parse_instrument

        self.asset = asset.strip().upper()
        self.instruments = [parse_instrument(n) for n in instruments]
        self.tenors_days = None if tenors_days is None else tuple(tenors_days)
        self._loaded: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}

    def __call__(self, when: datetime) -> MarketSnapshot:
        """The history market of ``when`` (:func:`pmargin.analytics.history.market_at`)."""
        from pmargin.analytics.history import load_series, load_template, market_at

        if self._loaded is None:
            self._loaded = (load_series(self.asset), load_template(self.asset))
        series, template = self._loaded
        alive = [i for i in self.instruments if i.expiry is None or i.expiry > when]
        return market_at(self.asset, when, series=series, template=template,
                         instruments=alive, tenors_days=self.tenors_days)


def history_builder(asset: str, instruments: Iterable[str] = (),
                    tenors_days: Sequence[int] | None = None) -> HistoryBuilder:
    """A :class:`HistoryBuilder` with the history loaded now (errors surface at once)."""
    b = HistoryBuilder(asset, instruments, tenors_days)
    from pmargin.analytics.history import load_series, load_template

    b._loaded = (load_series(b.asset), load_template(b.asset))
    return b


def _build_update(build: Builder, when: datetime, source: str) -> MarketUpdate:
    mkt = build(when)
    return make_update(payload_from_market(mkt.to_dict()), source, market=mkt)


class ReplayFeed(Feed):
    """History as a feed: one market per time, built on demand.

    Parameters
    ----------
    times : sequence of datetime
        Valuation times in increasing order (:func:`replay_times`).
    build : callable
        ``build(when) -> MarketSnapshot`` (:func:`history_builder`; tests pass snapshot-derived
        markets).
    source : str, optional
        Source id of the updates.
    workers : int, optional
        Build the markets in this many worker processes, a bounded window ahead of the
        consumer (0: in this process, one at a time). ``build`` must then be picklable.
    """

    def __init__(self, times: Sequence[datetime], build: Builder,
                 source: str = "replay", workers: int = 0) -> None:
        if any(b <= a for a, b in pairwise(times)):
            raise InvalidInput("times", None, "must increase strictly")
        self.times = list(times)
        self.build = build
        self.source = check_source(source)
        if not 0 <= workers <= 8:
            raise InvalidInput("workers", workers, "must lie in [0, 8]")
        self.workers = workers

    def __len__(self) -> int:
        return len(self.times)

    def updates(self) -> Iterator[MarketUpdate]:
        """Build and yield each market in turn (the JSON block is what the service stores)."""
        if self.workers == 0:
            for t in self.times:
                yield _build_update(self.build, t, self.source)
            return
        from collections import deque
        from concurrent.futures import Future, ProcessPoolExecutor

        window = 8 * self.workers
        with ProcessPoolExecutor(self.workers) as pool:
            ahead: deque[Future[MarketUpdate]] = deque()
            it = iter(self.times)
            for t in it:
                ahead.append(pool.submit(_build_update, self.build, t, self.source))
                if len(ahead) >= window:
                    break
            while ahead:
                upd = ahead.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    ahead.append(pool.submit(_build_update, self.build, nxt, self.source))
                yield upd


@dataclass
class ReplayResult:
    """What a replay did and how long each update took.

    Attributes
    ----------
    statuses : Counter
        HTTP status -> count (200 applied, 202 held, 4xx refused).
    latencies_s : list of float
        Round trip of every applied update (s): sent -> every account re-margined and the
        epoch stored.
    wall_s : float
        Wall time of the whole replay (s).
    refusals : list of dict
        The first refusals and holds (time, status, body).
    """

    statuses: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    first: str | None = None
    last: str | None = None

    def summary(self) -> dict[str, Any]:
        """Counts, updates accepted per second, latency p50/p99/max in ms."""
        lat = np.asarray(self.latencies_s, dtype=np.float64) * 1e3
        sent = sum(self.statuses.values())
        ok = self.statuses.get(200, 0)

        def q(p: float) -> float | None:
            return round(float(np.percentile(lat, p)), 2) if lat.size else None

        return {"sent": sent, "accepted": ok, "held": self.statuses.get(202, 0),
                "refused": sent - ok - self.statuses.get(202, 0),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "wall_s": round(self.wall_s, 3),
                "accepted_per_s": round(ok / self.wall_s, 2) if self.wall_s > 0 else None,
                "latency_p50_ms": q(50), "latency_p99_ms": q(99),
                "latency_max_ms": round(float(lat.max()), 2) if lat.size else None,
                "first": self.first, "last": self.last, "refusals": self.refusals[:5]}


def replay_into(feed: Feed, url: str, key: str, speed: float | None = None, *,
                client: Any = None, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep,
                on_update: Callable[[MarketUpdate, int, float], None] | None = None,
                ) -> ReplayResult:
    """Post every update of ``feed`` to ``{url}/v1/market``, paced by ``speed``.

    Parameters
    ----------
    feed : Feed
        The updates (their valuation times set the pace).
    url : str
        Base URL of the service (``http://127.0.0.1:8000``).
    key : str
        An operator API key.
    speed : float, optional
        Seconds of history per second of wall time (3600: an hour a second); None: each update
        is sent as soon as the previous one is answered.
    client : httpx.Client, optional
        HTTP client (default: a new one with a 120 s timeout).
    clock, sleep : callable, optional
        Monotonic clock and sleep (tests pass their own).
    on_update : callable, optional
        ``on_update(update, status, round_trip_s)`` after each answer.

    Returns
    -------
    ReplayResult
        Statuses, latencies and wall time.

    Raises
    ------
    InvalidInput
        ``speed`` not positive; field ``--url`` when the service cannot be reached or answers
        401/403 or 5xx.
    """
    import httpx

    if speed is not None and not (speed > 0 and np.isfinite(speed)):
        raise InvalidInput("speed", speed, "must be a positive number of history seconds per "
                           "second, or max")
    own = client is None
    c = httpx.Client(timeout=120) if client is None else client
    res = ReplayResult()
    t_hist0: datetime | None = None
    wall0 = clock()
    try:
        for upd in feed:
            if t_hist0 is None:
                t_hist0 = upd.time
                wall0 = clock()
            if speed is not None:
                due = wall0 + (upd.time - t_hist0).total_seconds() / speed
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
            body = json.dumps(upd.payload["market"], allow_nan=True).encode()
            t0 = clock()
            try:
                r = c.post(f"{url.rstrip('/')}/v1/market", content=body, headers={
                    "Authorization": f"Bearer {key}", "Content-Type": "application/json",
                    "Idempotency-Key": f"{upd.source}:{upd.time.isoformat()}:{upd.digest[:16]}",
                    "X-Feed-Source": upd.source})
            except httpx.HTTPError as exc:
                raise InvalidInput("--url", url, f"cannot be reached ({exc})") from None
            rt = clock() - t0
            res.statuses[r.status_code] += 1
            if r.status_code == 200:
                res.latencies_s.append(rt)
            elif r.status_code in (401, 403) or r.status_code >= 500:
                raise InvalidInput("--key" if r.status_code < 500 else "--url",
                                   url, f"the service answered {r.status_code}: {r.text[:300]}")
            else:
                res.refusals.append({"time": upd.time.isoformat(), "status": r.status_code,
                                     "body": r.json()})
            res.first = res.first or upd.time.isoformat()
            res.last = upd.time.isoformat()
            if on_update is not None:
                on_update(upd, r.status_code, rt)
    finally:
        res.wall_s = clock() - wall0
        if own:
            c.close()
    return res


def parse_when(text: str, field: str, end_of_day: bool = False) -> datetime:
    """A ``--from``/``--to`` time: a date, or an ISO-8601 time with an offset.

    A bare date is UTC midnight (its last second for ``--to``).

    Parameters
    ----------
    text : str
        ``2025-01-01`` or ``2025-01-01T06:00:00Z``.
    field : str
        Option name for errors.
    end_of_day : bool, optional
        A bare date means its last second (so ``--to 2025-12-31`` includes that day's hours).

    Returns
    -------
    datetime
        Aware UTC.
    """
    from datetime import UTC, date

    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            t = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return t + timedelta(days=1, seconds=-1) if end_of_day else t
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(field, text, "is not a date (2025-01-01) or an ISO-8601 time "
                           "with an offset") from None
    if t.tzinfo is None:
        raise InvalidInput(field, text, "needs an offset (Z or +00:00) or a bare date")
    return ensure_utc(t, field)


def parse_speed(text: str) -> float | None:
    """``--speed``: seconds of history per wall second (positive), or ``max`` (None)."""
    if text.strip().lower() == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise InvalidInput("--speed", text, "must be a positive number or 'max'") from None
    if not (v > 0 and np.isfinite(v)):
        raise InvalidInput("--speed", text, "must be a positive number or 'max'")
    return v
