"""Margin backtest on history (issue 12.2): margins at each day against realised losses.

Each day ``d`` (at ``hour`` UTC) of the history:

1. one market is built from history (:func:`pmargin.analytics.history.market_with_instruments`),
   listing the day's standard instruments and every instrument still held by the books of the
   previous ``max(horizons)`` days;
2. the standard portfolios (:mod:`pmargin.analytics.portfolios`) are built on the day's
   instruments as the accounts of one :class:`~pmargin.book.Book`;
3. every model margins the whole book at once (``model.compute(book, market)``: risk arrays once
   per market, every account vectorised), giving IM and MM per portfolio;
4. the books opened ``h`` days earlier are revalued in the day's market (full revaluation: the
   realised index, the realised ATM vol and the smile around it, each option at its own strike
   and remaining time), giving the realised loss over a margin period of risk of ``h`` days.

Positions are held unchanged over the period (no rebalancing during a close-out); the hedge of
the delta-hedged straddle is set each day. Losses are in the margin currency: USD for linear
books (``settlement="linear"``, the default, so that every model, including USDC-only ones, sees
the same book), coin for inverse books (options ``q (C1/S1 − C0/S0)``, futures and perpetuals
``q (1 − F0/F1)``). A model that margins the book on no day is reported as skipped with its reason;
one that starts later (it needs history before the day) is tested from its first day; a model
failing on a day after that gets a NaN margin that :func:`pmargin.analytics.coverage.coverage`
counts as zero. A grid preset with the dynamic overlay (``dynamic`` in its TOML) carries its
price-range scale from one day to the next (the speed limit on increases); each worker starts
its run of days without a previous scale.

Any name of :func:`pmargin.models.list_models` (or a preset file) can be backtested: a new model
plugs in by name.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pmargin._typing import FloatArray
from pmargin.analytics.coverage import CoverageParams, coverage, load_coverage_params
from pmargin.analytics.history import (
    HistorySeries,
    SmileTemplate,
    load_series,
    load_template,
    market_with_instruments,
)
from pmargin.analytics.portfolios import PORTFOLIOS, build_portfolios
from pmargin.book import Book
from pmargin.conventions import ensure_utc
from pmargin.errors import InvalidInput, PmarginError
from pmargin.instruments import Instrument, InstrumentKind, Settlement
from pmargin.market import MarketSnapshot
from pmargin.models import list_models, load_model
from pmargin.models.portfolio_margin import PortfolioMarginModel

__all__ = ["BacktestResult", "BacktestSpec", "run_backtest", "summarise"]


@dataclass(frozen=True)
class BacktestSpec:
    """What to backtest.

    Attributes
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"``.
    start, end : datetime, optional
        Inclusive bounds (default: the whole history).
    horizons_days : tuple of int
        Margin periods of risk in days.
    models : tuple of str, optional
        Model names or preset paths (default: every name of ``list_models()``).
    portfolios : tuple of str
        Standard portfolio names (default: all).
    settlement : {"linear", "inverse"}
        Linear instruments in USDC accounts, or inverse ones in coin accounts.
    hour : int
        UTC hour of each day's step.
    step_days : int
        Days between steps.
    """

    asset: str = "BTC"
    start: datetime | None = None
    end: datetime | None = None
    horizons_days: tuple[int, ...] = (1, 2)
    models: tuple[str, ...] | None = None
    portfolios: tuple[str, ...] = PORTFOLIOS
    settlement: str = "linear"
    hour: int = 0
    step_days: int = 1

    def checked(self) -> BacktestSpec:
        """The spec with defaults filled in, validated (errors name the field)."""
        a = str(self.asset).strip().upper()
        try:
            settle = Settlement(self.settlement)
        except ValueError as exc:
            raise InvalidInput("settlement", self.settlement,
                               "must be 'linear' or 'inverse'") from exc
        hs = tuple(self.horizons_days)
        if not hs or any(not (isinstance(h, int) and 1 <= h <= 6) for h in hs) \
                or len(set(hs)) != len(hs):
            raise InvalidInput("horizons_days", hs, "must be distinct whole days from 1 to 6")
        if not (isinstance(self.step_days, int) and self.step_days >= 1):
            raise InvalidInput("step_days", self.step_days, "must be a positive whole number")
        if not (isinstance(self.hour, int) and 0 <= self.hour <= 23):
            raise InvalidInput("hour", self.hour, "must be an hour 0-23")
        for name in self.portfolios:
            if name not in PORTFOLIOS:
                raise InvalidInput("portfolios", name,
                                   f"unknown portfolio (known: {', '.join(PORTFOLIOS)})")
        if not self.portfolios:
            raise InvalidInput("portfolios", (), "needs at least one portfolio")
        models = tuple(self.models) if self.models is not None else tuple(list_models())
        if not models:
            raise InvalidInput("models", (), "needs at least one model")
        for m in models:
            load_model(m)  # an unknown name is refused here, naming it
        start = None if self.start is None else ensure_utc(self.start, "start")
        end = None if self.end is None else ensure_utc(self.end, "end")
        if start is not None and end is not None and end <= start:
            raise InvalidInput("end", end.isoformat(), f"must be after start {start.isoformat()}")
        return replace(self, asset=a, settlement=settle.value, horizons_days=tuple(sorted(hs)),
                       models=models, portfolios=tuple(self.portfolios), start=start, end=end)

    @property
    def margin_currency(self) -> str:
        """USDC for linear books, the coin for inverse ones."""
        return "USDC" if self.settlement == "linear" else str(self.asset).upper()


@dataclass
class BacktestResult:
    """Margins and realised losses by day, model and portfolio.

    Attributes
    ----------
    spec : BacktestSpec
        The (checked) spec.
    dates : DatetimeIndex, shape (n_d,)
        Days (UTC) at which margins were computed.
    models : list of str
        Models that margined the book (skipped ones are in ``skipped``).
    portfolios : list of str
        Portfolios (accounts of each day's book).
    index_price, atm_vol : ndarray, shape (n_d,)
        Index (USD) and 30-day ATM vol of each day; ``vol_is_proxy`` flags the proxy.
    mc_usd : ndarray, shape (n_d,)
        USD value of one unit of the margin currency each day.
    im, mm : ndarray, shape (n_d, n_m, n_p)
        Initial and maintenance margin in the margin currency (NaN where the model failed).
    loss : dict of int to ndarray, shape (n_d, n_p)
        Realised loss (positive = loss) over each horizon, margin currency.
    errors : dict of str to int
        Days on which each model failed after its first day with a margin.
    first_error : dict of str to str
        The first failure message of each model with errors.
    skipped : dict of str to str
        Models that margined the book on no day, with the first reason.
    available_from : dict of str to str
        Models whose first margin came after the first day (e.g. a model needing history
        before the day), with that day; their statistics start there.
    timings : dict of str to float
        Wall seconds spent per stage, summed over workers (``market``, ``portfolios``,
        ``model:NAME``, ``valuation``); on a shared machine they include waiting for a core.
    cpu_seconds : dict of str to float
        CPU seconds (this process's user + system time) per stage, summed over workers.
    wall_seconds : float
        Elapsed time of the run.
    jobs : int
        Worker processes used.
    """

    spec: BacktestSpec
    dates: pd.DatetimeIndex
    models: list[str]
    portfolios: list[str]
    index_price: FloatArray
    atm_vol: FloatArray
    vol_is_proxy: np.ndarray
    mc_usd: FloatArray
    im: FloatArray
    mm: FloatArray
    loss: dict[int, FloatArray]
    errors: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    available_from: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    jobs: int = 1

    def daily_frame(self) -> pd.DataFrame:
        """Long table: one row per day, model and portfolio with IM, MM and the losses."""
        n_d, n_m, n_p = self.im.shape
        idx = pd.MultiIndex.from_product([self.dates, self.models, self.portfolios],
                                         names=["date", "model", "portfolio"])
        data: dict[str, Any] = {"im": self.im.ravel(), "mm": self.mm.ravel()}
        for h, lo in self.loss.items():
            data[f"loss_{h}d"] = np.broadcast_to(lo[:, None, :], (n_d, n_m, n_p)).ravel()
        data["mc_usd"] = np.repeat(self.mc_usd, n_m * n_p)
        return pd.DataFrame(data, index=idx).reset_index()


# ------------------------------------------------------------------------------------------
# the work of one worker: a contiguous run of days


@dataclass
class _Chunk:
    dates: list[datetime]
    index_price: list[float]
    atm_vol: list[float]
    proxy: list[bool]
    mc_usd: list[float]
    im: FloatArray
    mm: FloatArray
    loss: dict[int, FloatArray]
    errors: dict[str, int]
    first_error: dict[str, str]
    timings: dict[str, float]
    cpu: dict[str, float]


@dataclass
class _OpenBook:
    instruments: list[Instrument]
    qty: FloatArray  # (n_p, n_i)
    coin_collateral: FloatArray  # (n_p,) coin held besides the margin currency (linear books)
    marks0: FloatArray  # (n_i,) USD marks at the opening day
    spot0: float


def _marks(market: MarketSnapshot, insts: Sequence[Instrument]) -> FloatArray:
    return np.array([market.mark_price(i) for i in insts], dtype=np.float64)


def _pnl(book: _OpenBook, marks1: FloatArray, spot1: float, inverse: bool) -> FloatArray:
    """P&L (margin currency) of each portfolio of ``book`` from its opening to ``marks1``."""
    kinds = np.array([i.kind is InstrumentKind.OPTION for i in book.instruments], dtype=bool)
    if not inverse:
        pnl = book.qty @ (marks1 - book.marks0)
        return np.asarray(pnl + book.coin_collateral * (spot1 - book.spot0), dtype=np.float64)
    per_unit = np.where(kinds, marks1 / spot1 - book.marks0 / book.spot0,
                        1.0 - book.marks0 / marks1)
    return np.asarray(book.qty @ per_unit, dtype=np.float64)


def _run_chunk(spec: BacktestSpec, days: list[datetime], series: HistorySeries,
               template: SmileTemplate) -> _Chunk:
    t_all: dict[str, float] = {}
    c_all: dict[str, float] = {}
    c_last = [time.process_time()]

    def tick(key: str, t0: float) -> float:
        t1 = time.perf_counter()
        c1 = time.process_time()
        t_all[key] = t_all.get(key, 0.0) + t1 - t0
        c_all[key] = c_all.get(key, 0.0) + c1 - c_last[0]
        c_last[0] = c1
        return t1

    assert spec.models is not None
    models = {name: load_model(name) for name in spec.models}
    hs = spec.horizons_days
    n_d, n_m, n_p = len(days), len(models), len(spec.portfolios)
    im = np.full((n_d, n_m, n_p), np.nan)
    mm = np.full((n_d, n_m, n_p), np.nan)
    loss = {h: np.full((n_d, n_p), np.nan) for h in hs}
    day_index = {d: i for i, d in enumerate(days)}
    needed = sorted(set(days) | {d + timedelta(days=h) for d in days for h in hs})
    open_books: dict[int, _OpenBook] = {}
    errors: dict[str, int] = {}
    first_error: dict[str, str] = {}
    px: list[float] = []
    vols: list[float] = []
    proxy: list[bool] = []
    mc_usd: list[float] = []
    mc = spec.margin_currency
    inverse = spec.settlement == "inverse"
    for d in needed:
        t0 = time.perf_counter()
        # books still needing a valuation on this day
        live = {i: b for i, b in open_books.items() if days[i] + timedelta(days=hs[-1]) >= d}
        open_books = live
        held = {inst.name: inst for b in live.values() for inst in b.instruments}
        market, std = market_with_instruments(
            spec.asset, d, series=series, template=template, instruments=held.values(),
            settlement=spec.settlement)
        t0 = tick("market", t0)
        spot = market.index_price(spec.asset)
        for bi, b in live.items():
            h = round((d - days[bi]).total_seconds() / 86400)
            if h in loss:
                loss[h][bi] = -_pnl(b, _marks(market, b.instruments), spot, inverse)
        t0 = tick("valuation", t0)
        i = day_index.get(d)
        if i is None:
            continue
        point = series.at(d)
        px.append(point.index_price)
        vols.append(point.atm_vol)
        proxy.append(point.vol_is_proxy)
        mc_usd.append(market.collateral_price(mc))
        pfs = build_portfolios(std, market, mc, spec.portfolios)
        book = Book.from_portfolios(pfs)
        t0 = tick("portfolios", t0)
        for j, (name, model) in enumerate(list(models.items())):
            try:
                prep = model.prepare(book, market)
                res = model.evaluate(prep, book)
                # a dynamic overlay's speed limit needs yesterday's scale: carry it
                scale = getattr(prep, "dynamic_scale", None)
                if scale is not None and isinstance(model, PortfolioMarginModel):
                    models[name] = model.with_previous_scale(scale)
                im[i, j] = res.initial_margin
                mm[i, j] = res.maintenance_margin
            except PmarginError as exc:
                errors[name] = errors.get(name, 0) + 1
                first_error.setdefault(name, f"{d.isoformat()}: {exc}")
            t0 = tick(f"model:{name}", t0)
        coin_col = book.collateral_currencies.index(spec.asset) \
            if (not inverse and spec.asset in book.collateral_currencies) else None
        coin = (book.collateral[:, coin_col] if coin_col is not None else np.zeros(n_p))
        open_books[i] = _OpenBook(list(book.instruments), book.positions.toarray(),
                                  np.asarray(coin, dtype=np.float64),
                                  _marks(market, book.instruments), spot)
        tick("valuation", t0)
    return _Chunk(days, px, vols, proxy, mc_usd, im, mm, loss, errors, first_error, t_all, c_all)


def _worker(args: tuple[BacktestSpec, list[datetime], HistorySeries, SmileTemplate]) -> _Chunk:
    return _run_chunk(*args)


def _days(spec: BacktestSpec, series: HistorySeries) -> list[datetime]:
    frame = series.daily(spec.hour, spec.start, spec.end)
    last_ok = series.last_time - timedelta(days=spec.horizons_days[-1])
    days = [t.to_pydatetime() for t in frame.index if t.to_pydatetime() <= last_ok]
    return days[::spec.step_days]


def run_backtest(spec: BacktestSpec, *, series: HistorySeries | None = None,
                 template: SmileTemplate | None = None, jobs: int = 1,
                 progress: Callable[[str], None] | None = None) -> BacktestResult:
    """Run a margin backtest.

    Parameters
    ----------
    spec : BacktestSpec
        What to run (checked first: errors name the field).
    series : HistorySeries, optional
        History (default :func:`load_series` of ``spec.asset``).
    template : SmileTemplate, optional
        Smile template (default :func:`load_template`).
    jobs : int, optional
        Worker processes; the days are split into ``jobs`` contiguous runs.
    progress : callable, optional
        Called with a line of text as runs finish.

    Returns
    -------
    BacktestResult
        Margins, losses, failures and where the time went.
    """
    t_start = time.perf_counter()
    sp = spec.checked()
    s = series if series is not None else load_series(sp.asset)
    tpl = template if template is not None else load_template(sp.asset)
    if not (isinstance(jobs, int) and jobs >= 1):
        raise InvalidInput("jobs", jobs, "must be a positive whole number")
    days = _days(sp, s)
    if len(days) < 2:
        raise InvalidInput("start", sp.start.isoformat() if sp.start else None,
                           f"leaves {len(days)} day(s) of history with a realised loss; need 2")
    n_jobs = min(jobs, len(days))
    parts = [list(p) for p in np.array_split(np.array(days, dtype=object), n_jobs)]
    if n_jobs == 1:
        chunks = [_run_chunk(sp, days, s, tpl)]
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
            chunks = list(pool.map(_worker, [(sp, p, s, tpl) for p in parts]))
    if progress is not None:
        progress(f"{len(days)} days x {len(sp.models or ())} models x "
                 f"{len(sp.portfolios)} portfolios in {time.perf_counter() - t_start:.1f} s")
    return _merge(sp, chunks, time.perf_counter() - t_start, n_jobs)


def _merge(sp: BacktestSpec, chunks: list[_Chunk], wall: float, jobs: int) -> BacktestResult:
    assert sp.models is not None
    skipped: dict[str, str] = {}
    errors: dict[str, int] = {}
    first: dict[str, str] = {}
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for c in chunks:
        for k, v in c.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        for k, v in c.cpu.items():
            cpu[k] = cpu.get(k, 0.0) + v
        for k, n in c.errors.items():
            errors[k] = errors.get(k, 0) + n
        for k, msg in c.first_error.items():
            first.setdefault(k, msg)
    dates = pd.DatetimeIndex([d for c in chunks for d in c.dates], name="date")
    im_all = np.concatenate([c.im for c in chunks])
    mm_all = np.concatenate([c.mm for c in chunks])
    # a model that never margined the book is skipped; one that starts later (it needs history
    # before the day) is available from its first day; a failure after that is an error day
    keep: list[int] = []
    avail: dict[str, str] = {}
    for j, name in enumerate(sp.models):
        ok = ~np.isnan(im_all[:, j, :]).all(axis=1)
        if not ok.any():
            skipped[name] = first.get(name, "no margin on any day")
            errors.pop(name, None)
            first.pop(name, None)
            continue
        keep.append(j)
        f0 = int(np.argmax(ok))
        if f0 > 0:
            avail[name] = dates[f0].isoformat()
        n_err = int((~ok[f0:]).sum())
        if n_err:
            errors[name] = n_err
        else:
            errors.pop(name, None)
            first.pop(name, None)
    im = im_all[:, keep]
    mm = mm_all[:, keep]
    loss = {h: np.concatenate([c.loss[h] for c in chunks]) for h in sp.horizons_days}
    return BacktestResult(
        spec=sp, dates=dates, models=[sp.models[j] for j in keep],
        portfolios=list(sp.portfolios),
        index_price=np.array([x for c in chunks for x in c.index_price]),
        atm_vol=np.array([x for c in chunks for x in c.atm_vol]),
        vol_is_proxy=np.array([x for c in chunks for x in c.proxy], dtype=bool),
        mc_usd=np.array([x for c in chunks for x in c.mc_usd]),
        im=im, mm=mm, loss=loss, errors=errors, first_error=first, skipped=skipped,
        available_from=avail,
        timings=timings, cpu_seconds=cpu, wall_seconds=wall, jobs=jobs)


def summarise(result: BacktestResult, params: CoverageParams | None = None) -> pd.DataFrame:
    """Coverage of every model, portfolio, horizon and margin (IM, MM).

    Parameters
    ----------
    result : BacktestResult
        A run.
    params : CoverageParams, optional
        Level, significance, traffic-light settings (default ``coverage.toml``).

    Returns
    -------
    DataFrame
        One row per ``model``, ``portfolio``, ``horizon_days``, ``margin`` (``IM``/``MM``) with
        the fields of :class:`~pmargin.analytics.coverage.CoverageResult`, ``kupiec_reject``,
        ``independence_reject``, ``cc_reject`` (at ``params.significance``), ``too_many`` /
        ``too_few`` (Kupiec rejects with more / fewer exceedances than ``1 - level``: too few
        means the margin is above the level, safe but costly) and ``average_margin_usd``.
    """
    p = params or load_coverage_params()
    rows = []
    for j, model in enumerate(result.models):
        ok = ~np.isnan(result.im[:, j, :]).all(axis=1)
        f0 = int(np.argmax(ok))
        for k, pf in enumerate(result.portfolios):
            for h, lo in result.loss.items():
                for label, arr in (("IM", result.im), ("MM", result.mm)):
                    m = arr[f0:, j, k]
                    r = coverage(m, lo[f0:, k], p).as_dict()
                    r["first_day"] = result.dates[f0].date().isoformat()
                    usd = m * result.mc_usd[f0:]
                    r["average_margin_usd"] = float(np.nanmean(np.where(np.isnan(usd), 0.0, usd)))
                    rows.append({"model": model, "portfolio": pf, "horizon_days": h,
                                 "margin": label, **r})
    df = pd.DataFrame(rows)
    if not df.empty:
        a = p.significance
        df["kupiec_reject"] = df["kupiec_p"] < a
        # the dangerous failure is too many exceedances; too few means margin above the level
        df["too_many"] = df["kupiec_reject"] & (df["exceedances"] > (1 - p.level) * df["n"])
        df["too_few"] = df["kupiec_reject"] & ~df["too_many"]
        df["independence_reject"] = df["independence_p"] < a
        df["cc_reject"] = df["cc_p"] < a
    return df

