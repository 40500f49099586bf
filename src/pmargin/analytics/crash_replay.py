"""Crash replays: a generated book carried hour by hour through a real crash.

Each margin regime is run with the liquidation cascade's liquidity and price impact.

For each regime (isolated standard, cross standard, each portfolio-margin preset, ``var-fhs``
and the dynamic overlay of a grid preset, ``<preset>-dynamic``):

1. **Funding.** The same positions; every account with positions holds collateral of
   ``funding_multiple x IM`` under that regime at the episode's start (:func:`fund_book`). The
   sum of those IMs is *the capital the regime demanded before the crash*. Under isolated
   margin the accounts are first split into one sub-account per position
   (:meth:`~pmargin.models.isolated.IsolatedMarginModel.isolate_portfolios`).
2. **Hours.** At every hour of the window the market is the history market of that hour
   (:func:`pmargin.analytics.history.market_at`, listing the book's instruments); every account
   is margined; accounts in margin call are counted; if any account is under maintenance margin,
   one cascade (:func:`pmargin.liquidation.cascade.run_cascade`, shock 0 at that hour) plans and
   executes every liquidation, moves the index by its impact, covers bankruptcies from the
   insurance fund and then by ADL (or socialised loss), in a Decimal ledger whose conservation
   error must be exactly 0. The fund carries to the next hour in the margin currency.

A regime that cannot margin the book at the episode's start (``var-fhs`` needs DVOL history
before the day: none exists before 2021, so it cannot run on COVID 2020) gives a row with its
``reason`` and no figures (``None``), never a silent omission or a made-up number.

**Dynamic overlay** (``<preset>-dynamic``: the grid preset with ``[dynamic]`` of
``crash_replay.toml``, the values of ``docs/examples/pmargin-dynamic.toml``). The overlay's speed
limit (the scale rises at most ``max_increase`` a day) needs yesterday's scale; the backtest
carries it from one day to the next. A replay steps by the hour, so the scale of hour ``h`` takes
as its previous scale the scale in force 24 hours earlier (hour ``h - 24``): the limit stays a
daily one, checked on every 24-hour window. The 24 hours before the window come from the history
markets of those hours, the first of them without a previous scale (the unconstrained target).

Figures per regime (USD at the hour they happen): margin calls (accounts ever in margin call),
accounts liquidated (ever under MM with positions), liquidated notional, bad debt (losses beyond
the account's own collateral), insurance-fund use and drawdown, ADL and socialised loss, losses
no one covered, and the capital demanded before the crash.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from pydantic import Field, model_validator

from pmargin.analytics.settings import FrozenSettings, load_settings
from pmargin.book import Book
from pmargin.errors import InvalidInput, PmarginError
from pmargin.liquidation.cascade import CascadeParams, load_cascade_params, run_cascade
from pmargin.liquidation.planner import PlannerParams
from pmargin.market import MarketSnapshot
from pmargin.models import list_models, load_model
from pmargin.models.base import MarginModel
from pmargin.models.health import HealthState
from pmargin.models.isolated import IsolatedMarginModel
from pmargin.models.params import DynamicParams
from pmargin.models.portfolio_margin import PortfolioMarginModel

__all__ = [
    "Episode",
    "RegimeOutcome",
    "ReplayParams",
    "fund_book",
    "load_regime",
    "load_replay_params",
    "replay_all",
    "replay_episode",
    "replay_markets",
]

DYNAMIC_SUFFIX = "-dynamic"
"""``<grid preset>-dynamic``: the preset with the ``[dynamic]`` overlay of ``crash_replay.toml``."""

DAY_HOURS = 24
"""Hours between a dynamic scale and the previous scale its speed limit refers to."""


class Episode(FrozenSettings):
    """A crash window of ``crash_replay.toml`` (hours from ``start`` to ``end`` inclusive)."""

    name: str = Field(min_length=1)
    title: str
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> Episode:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be UTC times (with Z)")
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    def hours(self) -> list[datetime]:
        """Every hour of the window, start first."""
        n = int((self.end - self.start) / timedelta(hours=1))
        return [self.start + timedelta(hours=h) for h in range(n + 1)]


class ReplayParams(FrozenSettings):
    """Settings of ``crash_replay.toml``."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    regimes: tuple[str, ...] = Field(min_length=1)
    funding_multiple: float = Field(ge=1.0)
    book_tenors_days: tuple[int, ...] = Field(min_length=1)
    accounts: int = Field(ge=1)
    seed: int = Field(ge=0)
    episodes: tuple[Episode, ...] = Field(min_length=1)
    dynamic: DynamicParams | None = None
    """Overlay of the ``<grid preset>-dynamic`` regimes (None: no such regime)."""

    def episode(self, name: str) -> Episode:
        """The episode called ``name`` (InvalidInput naming the known ones otherwise)."""
        for e in self.episodes:
            if e.name == name:
                return e
        raise InvalidInput("EPISODE", name,
                           f"unknown episode (known: {', '.join(e.name for e in self.episodes)})")


def load_replay_params(path: str | Path | None = None) -> ReplayParams:
    """Load ``crash_replay.toml`` (or a user file)."""
    return load_settings(ReplayParams, "crash_replay", path)


def load_regime(name: str, params: ReplayParams | None = None) -> MarginModel:
    """The model of a regime.

    A name of :func:`pmargin.models.list_models`, a preset file, or ``<grid preset>-dynamic``
    (the preset with ``params.dynamic`` as its ``[dynamic]`` overlay).

    Raises
    ------
    InvalidInput
        On an unknown name, or a ``-dynamic`` regime of a preset without a scenario grid.
    """
    if (name.endswith(DYNAMIC_SUFFIX) and "/" not in name and not name.endswith(".toml")
            and name not in list_models()):
        p = params or load_replay_params()
        if p.dynamic is None:
            raise InvalidInput("regime", name, "crash_replay.toml has no [dynamic] overlay")
        base = name[: -len(DYNAMIC_SUFFIX)]
        if not isinstance(load_model(base), PortfolioMarginModel):
            raise InvalidInput("regime", name,
                               f"the dynamic overlay scales a scenario grid; {base} has none")
        return load_model(base, {"name": name, "dynamic": p.dynamic.model_dump()})
    try:
        return load_model(name)
    except InvalidInput as exc:
        if exc.field != "model":
            raise
        raise InvalidInput("regime", name, f"{exc.reason}, or <grid preset>{DYNAMIC_SUFFIX} "
                           "(the preset with the [dynamic] overlay of crash_replay.toml), "
                           "or a preset file") from exc


def _is_dynamic(model: MarginModel) -> TypeGuard[PortfolioMarginModel]:
    return isinstance(model, PortfolioMarginModel) and model.params.dynamic is not None


def fund_book(book: Book, model: MarginModel, market: MarketSnapshot, multiple: float
              ) -> tuple[Book, float]:
    """The book with each account's margin-currency cash set so that equity = multiple x IM.

    Accounts without positions keep their cash; cash is never set below 0 (an account whose
    positions alone are worth more than ``multiple x IM`` keeps 0 cash).

    Parameters
    ----------
    book : Book
        Accounts (the margin currency must be a collateral column).
    model : MarginModel
        Regime whose IM is funded.
    market : MarketSnapshot
        Market at the episode's start.
    multiple : float
        Funding multiple (>= 1).

    Returns
    -------
    Book
        A copy with new cash.
    float
        Sum of the regime's IM over the book, USD (the capital demanded).
    """
    if not np.isfinite(multiple) or multiple < 1.0:
        raise InvalidInput("funding_multiple", multiple, "must be at least 1")
    res = model.compute(book, market)
    k = [c.upper() for c in book.collateral_currencies].index(book.margin_currency.upper())
    active = np.diff(book.positions.tocsr().indptr) > 0
    coll = book.collateral.copy()
    target = coll[:, k] + multiple * res.initial_margin - res.equity
    coll[:, k] = np.where(active, np.maximum(target, 0.0), coll[:, k])
    out = Book(book.margin_currency, list(book.account_ids), list(book.instruments),
               book.positions.copy(), book.entry_notional.copy(),
               list(book.collateral_currencies), coll, book.orders)
    return out, float(res.initial_margin.sum() * res.mc_usd)


@dataclass
class RegimeOutcome:
    """What one regime went through in one episode (USD)."""

    episode: str
    asset: str
    regime: str
    accounts: int
    capital_demanded_usd: float
    hours: int = 0
    margin_calls: int = 0
    accounts_liquidated: int = 0
    liquidated_notional_usd: float = 0.0
    penalties_usd: float = 0.0
    bad_debt_usd: float = 0.0
    insurance_fund_used_usd: float = 0.0
    insurance_fund_start_usd: float = 0.0
    insurance_fund_end_usd: float = 0.0
    insurance_fund_min_usd: float = 0.0
    adl_usd: float = 0.0
    socialised_usd: float = 0.0
    uncovered_usd: float = 0.0
    cascades: int = 0
    conservation_error: str = "0"
    ledger_equity_max_error: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    reason: str = ""
    """Why the regime was not run on this episode (empty: it ran); its figures are then None."""

    @property
    def ran(self) -> bool:
        """Whether the regime margined the book through the episode."""
        return not self.reason

    @property
    def losses_not_covered_usd(self) -> float:
        """Losses beyond the defaulters' own collateral (bad debt), whoever then paid them."""
        return self.bad_debt_usd

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the figures of a regime that did not run are None)."""
        d = asdict(self)
        d["losses_not_covered_usd"] = self.losses_not_covered_usd
        if not self.ran:
            for k in _FIGURES:
                d[k] = None
        return d


_LABELS = frozenset({"episode", "asset", "regime", "seconds", "notes", "reason"})
"""Keys of :meth:`RegimeOutcome.to_dict` that are not figures (kept for a regime that did not
run)."""
_FIGURES = (*(f.name for f in fields(RegimeOutcome) if f.name not in _LABELS),
            "losses_not_covered_usd")
"""Keys of :meth:`RegimeOutcome.to_dict` that are None when the regime did not run."""


def _active(book: Book) -> np.ndarray:
    return np.asarray(np.diff(book.positions.tocsr().indptr) > 0)


def replay_markets(book: Book, markets: Sequence[MarketSnapshot], model: MarginModel,
                   underlying: str, outcome: RegimeOutcome, cascade: CascadeParams | None = None,
                   planner: PlannerParams | None = None,
                   scales: list[dict[str, float] | None] | None = None) -> Book:
    """Carry a (funded) book through a sequence of hourly markets under one model.

    The cascade of hour ``h`` starts from hour ``h - 1``'s market moved to hour ``h``'s index
    (vols of ``h - 1``, sticky to strike): the ledger then opens at the previous hour's equity,
    so auto-deleveraging draws on the profits made over the hour, as a venue's ADL ranking of
    unrealised profit would.

    Parameters
    ----------
    book : Book
        Funded accounts (sub-accounts for isolated margin).
    markets : sequence of MarketSnapshot
        The market at the start, then at each hour (``len(markets) - 1`` hours).
    model : MarginModel
        Regime.
    underlying : str
        Coin whose index the cascade's price impact moves.
    outcome : RegimeOutcome
        Filled in place (totals in USD).
    cascade : CascadeParams, optional
        Cascade settings (default ``cascade.toml``); its fund is the opening balance.
    planner : PlannerParams, optional
        Planner settings (default ``planner.toml``).
    scales : list, optional
        Dynamic overlay only: the scales in force at the hours before ``markets[1]``, the last
        one at ``markets[0]``; hour ``h`` takes ``scales[-DAY_HOURS]`` counted from its own
        position as its previous scale (the scale 24 hours earlier; None: no speed limit), and
        each hour's scale is appended. Default: no scale before ``markets[1]``.

    Returns
    -------
    Book
        The accounts after the last hour.
    """
    cp = cascade or load_cascade_params()
    if len(markets) < 2:
        raise InvalidInput("markets", len(markets), "need the start and at least one hour")
    fund_coin = cp.insurance_fund_usd / markets[0].collateral_price(book.margin_currency)
    called: set[str] = set()
    liquidated: set[str] = set()
    cons = Decimal(0)
    outcome.insurance_fund_start_usd = cp.insurance_fund_usd
    fund_min = cp.insurance_fund_usd
    last_px = 0.0
    for h in range(1, len(markets)):
        prev, mkt = markets[h - 1], markets[h]
        px = mkt.collateral_price(book.margin_currency)
        last_px = px
        hour_model = model
        if _is_dynamic(model):
            if scales is None:
                scales = [None]
            back = len(scales) - DAY_HOURS
            hour_model = model.with_previous_scale(scales[back] if back >= 0 else None)
        prep = hour_model.prepare(book, mkt)
        res = hour_model.evaluate(prep, book)
        if scales is not None:
            scales.append(getattr(prep, "dynamic_scale", None))
        health = res.health
        act = _active(book)
        ids = book.account_ids
        for i in np.flatnonzero((health == HealthState.MARGIN_CALL) & act):
            called.add(ids[i])
        under = np.flatnonzero((health >= HealthState.LIQUIDATION) & act)
        outcome.hours += 1
        if under.size == 0:
            continue
        for i in under:
            liquidated.add(ids[i])
        # the cascade converts its opening fund at the price of the market it starts from
        prev_px = prev.collateral_price(book.margin_currency)
        params = cp.model_copy(update={"insurance_fund_usd": fund_coin * prev_px})
        move = mkt.index_price(underlying) / prev.index_price(underlying) - 1.0
        r = run_cascade(book, prev, hour_model, move, underlying, params, planner,
                        label=f"{outcome.regime} hour {h}")
        outcome.cascades += 1
        _check_money(r, outcome, h)
        cons += abs(r.conservation_error)
        outcome.ledger_equity_max_error = max(outcome.ledger_equity_max_error,
                                              r.ledger_equity_max_error)
        for rd in r.rounds:
            rate = rd.index if book.margin_currency.upper() == underlying.upper() else px
            fund_coin += (rd.penalties_usd - rd.insurance_fund_used_usd) / rate
            outcome.liquidated_notional_usd += rd.liquidated_notional_usd
            outcome.penalties_usd += rd.penalties_usd
            outcome.bad_debt_usd += rd.bad_debt_usd
            outcome.insurance_fund_used_usd += rd.insurance_fund_used_usd
            outcome.adl_usd += rd.adl_usd
            outcome.socialised_usd += rd.socialised_usd
            outcome.uncovered_usd += rd.uncovered_usd
            # an emptied fund's float carry can be -3e-17 coin (see below): its balance is 0
            fund_min = min(fund_min, max(fund_coin, 0.0) * rate)
        # the fund's coin balance is carried as a float from the rounds' USD figures: a fund the
        # cascade emptied (its ledger balance exactly 0) can come out at -3e-17 coin here
        if fund_coin < -1e-12:
            raise RuntimeError(f"{outcome.regime} hour {h}: the insurance fund went negative "
                               f"({fund_coin} {book.margin_currency})")
        fund_coin = max(fund_coin, 0.0)
        assert r.final_book is not None
        book = r.final_book
    outcome.margin_calls = len(called)
    outcome.accounts_liquidated = len(liquidated)
    outcome.conservation_error = str(cons)
    outcome.insurance_fund_end_usd = fund_coin * last_px
    outcome.insurance_fund_min_usd = fund_min
    return book


LEDGER_EQUITY_TOLERANCE = 1e-12
"""Largest |ledger balance - model equity| of an account after a cascade (margin currency): the
ledger holds each equity rounded to the currency quantum (1e-18 for coins), nothing more."""


def _check_money(r: Any, outcome: RegimeOutcome, hour: int) -> None:
    """Money conserves exactly in every cascade and every balance is the account's equity."""
    if r.conservation_error != 0 or not r.ledger_equity_max_error <= LEDGER_EQUITY_TOLERANCE:
        raise RuntimeError(
            f"{outcome.episode} {outcome.asset} {outcome.regime} hour {hour}: the cascade's "
            f"ledger does not conserve money (conservation error {r.conservation_error}, "
            f"largest |balance - equity| {r.ledger_equity_max_error})")


def regime_book(book: Book, model: MarginModel, market: MarketSnapshot) -> Book:
    """The accounts a regime margins: the book, or its isolated sub-accounts."""
    if isinstance(model, IsolatedMarginModel):
        pfs = [book.portfolio(r) for r in range(book.n_accounts)]
        return Book.from_portfolios(model.isolate_portfolios(pfs, market))
    return book


def replay_episode(episode: Episode, asset: str, params: ReplayParams | None = None,
                   regimes: Sequence[str] | None = None, accounts: int | None = None,
                   book: Book | None = None, cascade: CascadeParams | None = None
                   ) -> list[RegimeOutcome]:
    """Replay one episode on one asset under every regime.

    Parameters
    ----------
    episode : Episode
        Window.
    asset : str
        ``"BTC"`` or ``"ETH"``.
    params : ReplayParams, optional
        Settings (default ``crash_replay.toml``).
    regimes : sequence of str, optional
        Models (default ``params.regimes``; see :func:`load_regime`).
    accounts : int, optional
        Generated accounts (default ``params.accounts``); ignored with ``book``.
    book : Book, optional
        A coin-margined book of ``asset`` to replay instead of a generated one (its instruments
        must not expire inside the window).
    cascade : CascadeParams, optional
        Cascade settings.

    Returns
    -------
    list of RegimeOutcome
        One per regime, in order; a regime that could not margin the book has its ``reason``.
    """
    return replay_all([episode], [asset], params, regimes, accounts, book, cascade)


def replay_all(episodes: Sequence[Episode], assets: Sequence[str],
               params: ReplayParams | None = None, regimes: Sequence[str] | None = None,
               accounts: int | None = None, book: Book | None = None,
               cascade: CascadeParams | None = None, jobs: int = 1) -> list[RegimeOutcome]:
    """Replay every episode x asset x regime, in that order, on ``jobs`` processes.

    Each (episode, asset, regime) is one task; a worker builds an episode's book and markets once
    for the tasks of that episode it runs. The results do not depend on ``jobs`` (only the
    ``seconds`` of each row, its wall time, does).

    Parameters
    ----------
    episodes, assets : sequences
        Windows and assets (``"BTC"``, ``"ETH"``).
    params, regimes, accounts, book, cascade
        As :func:`replay_episode`.
    jobs : int
        Worker processes (1: this process).

    Returns
    -------
    list of RegimeOutcome
        One per episode x asset x regime.
    """
    p = params or load_replay_params()
    if not (isinstance(jobs, int) and jobs >= 1):
        raise InvalidInput("jobs", jobs, "must be a positive whole number")
    names = list(regimes or p.regimes)
    for name in names:  # an unknown name is the caller's error, before any work
        load_regime(name, p)
    for a in assets:
        if book is not None and book.margin_currency.upper() != a.upper():
            raise InvalidInput("book.margin_currency", book.margin_currency,
                               f"must be {a.upper()} for a {a.upper()} replay")
    tasks = [_Task(e, a.upper(), name, p, accounts, book, cascade)
             for e in episodes for a in assets for name in names]
    n_jobs = min(jobs, len(tasks))
    if n_jobs <= 1:
        return [_run_task(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context(method),
                             initializer=_init_worker, initargs=(n_jobs,)) as pool:
        return list(pool.map(_run_task, tasks, chunksize=1))


@dataclass(frozen=True)
class _Task:
    episode: Episode
    asset: str
    regime: str
    params: ReplayParams
    accounts: int | None
    book: Book | None
    cascade: CascadeParams | None


@dataclass
class _Inputs:
    """An episode's book and hourly markets (built once per process for its regimes)."""

    key: tuple[Any, ...]
    book: Book
    markets: list[MarketSnapshot]
    series: Any
    """The asset's history (:func:`pmargin.analytics.history.load_series`)."""
    template: Any
    """Its smile template (:func:`pmargin.analytics.history.load_template`)."""
    before: list[MarketSnapshot] | None = None
    """The markets of the DAY_HOURS hours before the start (dynamic overlay), built on demand."""


_INPUTS: list[_Inputs] = []
"""The last episode's inputs of this process (one: an episode's markets are large)."""


def _init_worker(jobs: int) -> None:
    """A worker's numba kernels use its share of the cores (results do not depend on it)."""
    from pmargin._numba import NUMBA_ENABLED

    if NUMBA_ENABLED:
        from pmargin._numba import numba

        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS,
                                         (os.cpu_count() or 1) // jobs)))


def _inputs(t: _Task) -> _Inputs:
    from pmargin.analytics.history import load_series, load_template, market_at
    from pmargin.synthetic import chain_universe, generate_book

    p, a, e = t.params, t.asset, t.episode
    key = (e, a, p.book_tenors_days, p.seed, t.accounts or p.accounts,
           None if t.book is None else id(t.book))
    if _INPUTS and _INPUTS[0].key == key:
        return _INPUTS[0]
    _INPUTS.clear()
    series = load_series(a)
    template = load_template(a)
    book = t.book
    if book is None:
        start = market_at(a, e.start, series=series, template=template,
                          tenors_days=p.book_tenors_days)
        book = generate_book(start, chain_universe(start, a), t.accounts or p.accounts,
                             seed=p.seed, margin_currency=a)
    insts = list(book.instruments)
    markets = [market_at(a, h, series=series, template=template, instruments=insts,
                         tenors_days=p.book_tenors_days) for h in e.hours()]
    _INPUTS.append(_Inputs(key, book, markets, series, template))
    return _INPUTS[0]


def _scales_before(t: _Task, inputs: _Inputs, model: PortfolioMarginModel
                   ) -> list[dict[str, float] | None]:
    """Dynamic scales of the DAY_HOURS hours before the start (each without a previous one)."""
    from pmargin.analytics.history import market_at

    if inputs.before is None:
        a, e = t.asset, t.episode
        inputs.before = [market_at(a, e.start - timedelta(hours=k), series=inputs.series,
                                   template=inputs.template,
                                   tenors_days=t.params.book_tenors_days)
                         for k in range(DAY_HOURS, 0, -1)]
    return [model.dynamic_scales([t.asset], m) for m in inputs.before]


def _run_task(t: _Task) -> RegimeOutcome:
    import time

    t0 = time.perf_counter()
    inputs = _inputs(t)
    book, markets, start = inputs.book, inputs.markets, inputs.markets[0]
    model = load_regime(t.regime, t.params)
    scales: list[dict[str, float] | None] | None = None
    o = RegimeOutcome(t.episode.name, t.asset, t.regime, 0, 0.0)
    try:
        fund_model = model
        if _is_dynamic(model):
            scales = _scales_before(t, inputs, model)
            fund_model = model.with_previous_scale(scales[0])
            scales.append(fund_model.dynamic_scales([t.asset], start))
        funded, capital = fund_book(book, fund_model, start, t.params.funding_multiple)
    except PmarginError as exc:
        o.reason = (f"cannot margin the book at the episode's start "
                    f"({t.episode.start:%Y-%m-%d %H:%M} UTC): {exc}")
        o.seconds = time.perf_counter() - t0
        return o
    accts = regime_book(funded, model, start)
    o.accounts, o.capital_demanded_usd = accts.n_accounts, capital
    # an error after the start is not a property of the regime: it stops the replay
    replay_markets(accts, markets, model, t.asset, o, t.cascade, scales=scales)
    o.seconds = time.perf_counter() - t0
    return o
