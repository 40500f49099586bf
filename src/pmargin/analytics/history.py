"""History as markets: the one builder of markets from ../shared/data (issues 11, 12, 13).

:func:`market_at` turns the hourly history of an asset into a full
:class:`~pmargin.market.snapshot.MarketSnapshot` at any hour from mid-2018 to 2026:

* **index**: the close of the last hourly bar ending at or before ``when``
  (:mod:`pmargin.analytics.series`);
* **ATM vol**: DVOL (open of ``when``'s UTC day), or before 2021-03-24 the realised-vol proxy
  (the market's ``source`` then says ``proxy``);
* **forwards**: ``S exp(basis_rate T)`` (``history.toml``; 0 by default: there is no futures
  history, so futures and the perpetual are marked at the index);
* **vol surface**: the smile template fitted on the Deribit chains
  (:mod:`pmargin.analytics.smile_template`) scaled so that the 30-day ATM vol is the day's ATM
  vol;
* **listed instruments**: :func:`standard_instruments` (constant-tenor options, the inverse
  perpetual, dated futures at the tenors), every option marked at the surface vol, plus any
  ``instruments`` the caller asks to be listed (e.g. positions opened on an earlier day).

Other modules must build history markets through this module only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import TypedDict, Unpack

import numpy as np
from scipy.special import ndtri

from pmargin._typing import BoolArray, FloatArray
from pmargin.analytics.history_params import HistoryParams, load_history_params
from pmargin.analytics.series import HistoryPoint, HistorySeries, ProxyFit, load_series
from pmargin.analytics.smile_template import SmileTemplate, load_template
from pmargin.conventions import DERIBIT_EXPIRY_TIME, ensure_utc, year_fraction
from pmargin.errors import InvalidInput, StaleMarketData
from pmargin.instruments import (
    Instrument,
    InstrumentKind,
    OptionRight,
    Settlement,
    parse_instrument,
)
from pmargin.market.curves import ForwardCurve
from pmargin.market.snapshot import MarketSnapshot
from pmargin.market.surface import Smile, VolSurface

__all__ = ["HistoryMarketOptions", "HistoryPoint", "HistorySeries", "ProxyFit", "SmileTemplate",
           "constant_tenor_expiry", "history_source", "load_series", "load_template", "market_at",
           "market_with_instruments", "round_strike", "standard_instruments"]


def _params(params: HistoryParams | None) -> HistoryParams:
    return params or load_history_params()


def constant_tenor_expiry(when: datetime, tenor_days: int) -> datetime:
    """Deribit-style expiry (08:00 UTC) nearest to ``when + tenor_days``, after ``when``.

    Parameters
    ----------
    when : datetime
        Aware datetime.
    tenor_days : int
        Tenor in days (positive).

    Returns
    -------
    datetime
        08:00 UTC of the day nearest to ``when + tenor_days`` (ties to the later day).
    """
    if not (isinstance(tenor_days, int) and tenor_days > 0):
        raise InvalidInput("tenor_days", tenor_days, "must be a positive whole number of days")
    target = ensure_utc(when, "when") + timedelta(days=tenor_days)
    same = datetime.combine(target.date(), time(8, 0), tzinfo=UTC)
    cands = [same - timedelta(days=1), same, same + timedelta(days=1)]
    best = min(cands, key=lambda c: (abs((c - target).total_seconds()), -c.timestamp()))
    assert best.timetz() == DERIBIT_EXPIRY_TIME
    return best


def round_strike(strike: float, forward: float, step_fraction: float) -> float:
    """Round a strike to the listing grid ``step_fraction * 10**floor(log10(forward))``.

    Parameters
    ----------
    strike : float
        Strike in USD (positive).
    forward : float
        Forward in USD, which sets the grid.
    step_fraction : float
        Grid step as a fraction of the power of ten below the forward.

    Returns
    -------
    float
        The nearest grid strike (at least one step).
    """
    step = step_fraction * 10.0 ** math.floor(math.log10(forward))
    n = max(round(strike / step), 1)
    return float(round(n * step, 10))


def history_source(asset: str, when: datetime, point: HistoryPoint, series: HistorySeries) -> str:
    """The ``source`` text of a history-built market (says ``proxy`` for proxy-vol markets)."""
    vol = ("ATM vol: realised-vol proxy (no DVOL before "
           f"{series.dvol_start.date().isoformat() if series.dvol_start else 'n/a'}, "
           f"ratio {series.proxy.ratio:.4f})" if point.vol_is_proxy else "ATM vol: DVOL")
    return (f"history-built {asset} at {point.time.isoformat()} "
            f"(index: {series.source or 'hourly closes'}; {vol}; smile: template)")


def _forward_curve(asset: str, when: datetime, spot: float, basis: float,
                   expiries: Iterable[datetime]) -> ForwardCurve:
    futs = {e: spot * math.exp(basis * year_fraction(when, e)) for e in expiries}
    return ForwardCurve(asset, spot, when, futures=futs if basis != 0.0 else None)


def _delta_strikes(fwd: FloatArray, tau: FloatArray, delta: FloatArray, is_call: BoolArray,
                   surf: VolSurface, iterations: int) -> FloatArray:
    """Strikes whose undiscounted Black forward delta is ``delta`` (calls) / ``-delta`` (puts).

    Fixed-point iteration on the smile, vectorised: ``K = F exp(-d1 s sqrt(T) + s^2 T / 2)``
    with ``d1 = N^-1(delta)`` (calls) or ``N^-1(1 - delta)`` (puts) and ``s`` the surface vol at
    the previous strike, starting from the ATM vol.
    """
    d1 = ndtri(np.where(is_call, delta, 1.0 - delta))
    sig = surf.vol(tau, fwd, fwd)
    strike = fwd
    for _ in range(iterations):
        strike = fwd * np.exp(-d1 * sig * np.sqrt(tau) + 0.5 * sig * sig * tau)
        sig = surf.vol(tau, strike, fwd)
    return np.asarray(strike, dtype=np.float64)


def _standard(asset: str, w: datetime, spot: float, atm: float, template: SmileTemplate,
              p: HistoryParams, tenors: tuple[int, ...], deltas: tuple[float, ...],
              moneyness: tuple[float, ...], settlement: Settlement
              ) -> tuple[dict[str, Instrument], VolSurface, ForwardCurve]:
    basis = p.forward.basis_rate
    expiries = {t: constant_tenor_expiry(w, t) for t in tenors}
    node_exp = [w + timedelta(days=float(d)) for d in template.term_days]
    curve = _forward_curve(asset, w, spot, basis, [*expiries.values(), *node_exp])
    surf = template.surface(asset, w, atm, curve)
    quote = "USD" if settlement is Settlement.INVERSE else "USDC"
    out: dict[str, Instrument] = {
        "PERP": Instrument(InstrumentKind.PERPETUAL, asset, settlement, quote)}
    step = p.instruments.strike_step
    right = {True: OptionRight.CALL, False: OptionRight.PUT}
    # delta strikes of every tenor solved at once
    d_lab: list[tuple[str, int, bool]] = []
    for t in tenors:
        for d in deltas:
            for is_call in (True, False):
                d_lab.append((f"{t}d-{'C' if is_call else 'P'}-d{round(d * 100):02d}", t, is_call))
    d_val = np.array([d for _t in tenors for d in deltas for _c in (0, 1)], dtype=np.float64)
    d_tau = np.array([year_fraction(w, expiries[t]) for _, t, _c in d_lab], dtype=np.float64)
    d_fwd = np.array([curve.forward(expiries[t]) for _, t, _c in d_lab], dtype=np.float64)
    d_call = np.array([c for _, _t, c in d_lab], dtype=bool)
    d_k = (_delta_strikes(d_fwd, d_tau, d_val, d_call, surf, p.instruments.delta_iterations)
           if d_lab else np.zeros(0))
    solved = {lab: (float(k), float(f)) for (lab, _t, _c), k, f in
              zip(d_lab, d_k, d_fwd, strict=True)}
    for t in tenors:
        e = expiries[t]
        fwd = curve.forward(e)

        def opt(strike: float, is_call: bool, fwd: float, e: datetime = e) -> Instrument:
            return Instrument(InstrumentKind.OPTION, asset, settlement, quote, e,
                              round_strike(strike, fwd, step), right[is_call])

        out[f"{t}d-FUT"] = Instrument(InstrumentKind.FUTURE, asset, settlement, quote, e)
        out[f"{t}d-C-atm"] = opt(fwd, True, fwd)
        out[f"{t}d-P-atm"] = opt(fwd, False, fwd)
        for lab, tt, is_call in d_lab:
            if tt == t:
                k, f = solved[lab]
                out[lab] = opt(k, is_call, f)
        for m in moneyness:
            out[f"{t}d-{'C' if m > 1 else 'P'}-m{round(m * 100):03d}"] = opt(fwd * m, m > 1, fwd)
    return out, surf, curve


def _with_listed_smiles(surf: VolSurface, curve: ForwardCurve, template: SmileTemplate,
                        w: datetime, options: list[Instrument]) -> VolSurface:
    """The template surface plus one smile per listed option expiry, sampled from it.

    Each added smile holds the surface's vols at the template's ``x`` nodes and at the listed
    strikes of that expiry, so a listed option's vol is its sampled value exactly (and the
    models' per-instrument look-ups hit a smile instead of interpolating). Node smiles are kept
    as they are.
    """
    node_exp = {s.expiry for s in surf.smiles}
    by_exp: dict[datetime, set[float]] = {}
    for i in options:
        assert i.expiry is not None
        assert i.strike is not None
        if i.expiry not in node_exp:
            by_exp.setdefault(i.expiry, set()).add(i.strike)
    extra = []
    for e, ks in by_exp.items():
        tau = year_fraction(w, e)
        fwd = curve.forward(e)
        grid = np.unique(np.concatenate([fwd * np.exp(template.x_nodes * math.sqrt(tau)),
                                         np.array(sorted(ks))]))
        extra.append(Smile(e, tau, fwd, grid, surf.vol(tau, grid, fwd)))
    if not extra:
        return surf
    return VolSurface(surf.underlying, w, [*surf.smiles, *extra], curve)


def _check_settlement(settlement: str | Settlement) -> Settlement:
    try:
        return Settlement(settlement)
    except ValueError as exc:
        raise InvalidInput("settlement", settlement, "must be 'inverse' or 'linear'") from exc


def _resolve(asset: str, when: datetime, series: HistorySeries | None,
             template: SmileTemplate | None, params: HistoryParams | None
             ) -> tuple[str, HistorySeries, SmileTemplate, HistoryParams, HistoryPoint, datetime]:
    """The inputs every history market starts from.

    Returns
    -------
    tuple
        Upper-case asset, series, template and parameters (loaded where not given), the
        series' point at ``when`` and ``when`` in UTC.
    """
    if not isinstance(asset, str) or not asset.strip():
        raise InvalidInput("asset", asset, "must be a coin such as 'BTC'")
    a = asset.strip().upper()
    s = series if series is not None else load_series(a)
    if s.asset != a:
        raise InvalidInput("series", s.asset, f"is the history of {s.asset}, not {a}")
    tpl = template if template is not None else load_template(a)
    if tpl.asset != a:
        raise InvalidInput("template", tpl.asset, f"is the smile template of {tpl.asset}, not {a}")
    p = _params(params)
    return a, s, tpl, p, s.at(when), ensure_utc(when, "when")


class HistoryMarketOptions(TypedDict, total=False):
    """Keyword options of :func:`market_at` (documented there), :func:`market_with_instruments`."""

    series: HistorySeries | None
    template: SmileTemplate | None
    instruments: Iterable[Instrument | str]
    tenors_days: Iterable[int] | None
    settlement: str | Settlement
    params: HistoryParams | None
    atm_vol: float | None


def standard_instruments(
    asset: str,
    when: datetime,
    tenors_days: Iterable[int] | None = (7, 30, 90),
    *,
    deltas: Iterable[float] | None = None,
    moneyness: Iterable[float] | None = None,
    settlement: str | Settlement = Settlement.INVERSE,
    series: HistorySeries | None = None,
    template: SmileTemplate | None = None,
    params: HistoryParams | None = None,
) -> dict[str, Instrument]:
    """The standard instruments listed in the history market of ``when``.

    Parameters
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"``.
    when : datetime
        Aware datetime within the history.
    tenors_days : iterable of int, optional
        Constant tenors (days); ``None``: ``history.toml``. Each tenor's expiry is the 08:00 UTC
        nearest to ``when + tenor`` (:func:`constant_tenor_expiry`).
    deltas : iterable of float, optional
        Absolute deltas of the OTM calls and puts (default ``history.toml``: 0.10, 0.25).
    moneyness : iterable of float, optional
        Strikes as multiples of the forward (default ``history.toml``: none).
    settlement : {"inverse", "linear"}, optional
        Inverse (coin-settled, ``BTC-...``) or linear (``BTC_USDC-...``) instruments.
    series, template, params : optional
        History, smile template and parameters (defaults: loaded from ../shared, shipped TOML).

    Returns
    -------
    dict of str to Instrument
        Ordered by label: ``"PERP"``, then per tenor ``"{T}d-FUT"``, ``"{T}d-C-atm"``,
        ``"{T}d-P-atm"``, ``"{T}d-C-d25"`` / ``"{T}d-P-d25"`` (25-delta call/put),
        ``"{T}d-C-m110"`` (moneyness 1.10). Strikes are rounded to the listing grid
        (:func:`round_strike`), so deltas are approximate and two labels may name one instrument.
    """
    a, _, tpl, p, point, w = _resolve(asset, when, series, template, params)
    tenors = tuple(p.instruments.tenors_days if tenors_days is None else tenors_days)
    for t in tenors:
        constant_tenor_expiry(w, t)  # validates
    ds = tuple(p.instruments.deltas if deltas is None else deltas)
    for d in ds:
        if not (isinstance(d, float | int) and 0.0 < d < 0.5):
            raise InvalidInput("deltas", d, "must be in (0, 0.5)")
    ms = tuple(p.instruments.moneyness if moneyness is None else moneyness)
    for m in ms:
        if not (isinstance(m, float | int) and m > 0.0 and m != 1.0 and math.isfinite(m)):
            raise InvalidInput("moneyness", m, "must be positive, finite and not 1")
    out, _, _ = _standard(a, w, point.index_price, point.atm_vol, tpl, p, tenors, ds, ms,
                          _check_settlement(settlement))
    return out


def market_at(asset: str, when: datetime, **options: Unpack[HistoryMarketOptions]
              ) -> MarketSnapshot:
    """A full market of ``asset`` at ``when``, built from history.

    Parameters
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"``.
    when : datetime
        Aware datetime within the history (see :meth:`HistorySeries.locate`); the valuation time
        of the snapshot.
    **options
        Keyword-only, all optional (:class:`HistoryMarketOptions`):
    series : HistorySeries, optional
        History (default :func:`load_series`).
    template : SmileTemplate, optional
        Smile template (default :func:`load_template`, fitted on the Deribit chains).
    instruments : iterable of Instrument or str, optional
        Further instruments to list (marked from the forward curve and surface), e.g. positions
        opened on an earlier day. Expired ones raise ``StaleMarketData``.
    tenors_days : iterable of int, optional
        Tenors of the standard instruments (default ``history.toml``).
    settlement : {"inverse", "linear"}, optional
        Settlement of the standard instruments.
    params : HistoryParams, optional
        Parameters (default: the shipped ``history.toml``).
    atm_vol : float, optional
        Replace the history's ATM vol (decimal), e.g. for a stressed market; the source says so.

    Returns
    -------
    MarketSnapshot
        Index ``{asset: S, "USDC": 1}``, the standard instruments and ``instruments`` listed with
        marks, the inverse perpetual listed at the index, the template surface; ``source``
        starts with ``history-built`` and names the vol's origin (``proxy`` where it is).

    Raises
    ------
    InvalidInput
        For an unknown asset, a time outside the history, or bad parameters.
    """
    return market_with_instruments(asset, when, **options)[0]


def market_with_instruments(
    asset: str,
    when: datetime,
    *,
    series: HistorySeries | None = None,
    template: SmileTemplate | None = None,
    instruments: Iterable[Instrument | str] = (),
    tenors_days: Iterable[int] | None = None,
    settlement: str | Settlement = Settlement.INVERSE,
    params: HistoryParams | None = None,
    atm_vol: float | None = None,
) -> tuple[MarketSnapshot, dict[str, Instrument]]:
    """:func:`market_at` and the :func:`standard_instruments` it lists, built once.

    Parameters are those of :func:`market_at` (the standard instruments use the default deltas
    and moneyness of ``history.toml``).

    Returns
    -------
    tuple of (MarketSnapshot, dict of str to Instrument)
        The market and its standard instruments by label.
    """
    a, s, tpl, p, point, w = _resolve(asset, when, series, template, params)
    atm = point.atm_vol
    src = history_source(a, w, point, s)
    if atm_vol is not None:
        if not (isinstance(atm_vol, float | int) and math.isfinite(atm_vol) and atm_vol > 0):
            raise InvalidInput("atm_vol", atm_vol, "must be a positive finite decimal vol")
        atm = float(atm_vol)
        src += f"; ATM vol replaced by {atm:.4f}"
    tenors = tuple(p.instruments.tenors_days if tenors_days is None else tenors_days)
    std, surf, curve = _standard(a, w, point.index_price, atm, tpl, p, tenors,
                                 p.instruments.deltas, p.instruments.moneyness,
                                 _check_settlement(settlement))
    listed: dict[str, Instrument] = {i.name: i for i in std.values()}
    for raw in instruments:
        inst = raw if isinstance(raw, Instrument) else parse_instrument(raw)
        if inst.underlying != a:
            raise InvalidInput("instruments", inst.name, f"is not a {a} instrument")
        listed.setdefault(inst.name, inst)
    quotes: dict[str, Mapping[str, float]] = {}
    opts = [i for i in listed.values() if i.kind is InstrumentKind.OPTION]
    for i in listed.values():
        if i.expiry is not None and i.expiry <= w:
            raise StaleMarketData(
                "instruments", i.name,
                f"expired at {i.expiry.isoformat()}, at or before {w.isoformat()}")
    if opts:
        surf = _with_listed_smiles(surf, curve, tpl, w, opts)
        taus = np.array([year_fraction(w, i.expiry) for i in opts if i.expiry])
        fwds = np.array([curve.forward(i.expiry) for i in opts])
        strikes = np.array([i.strike for i in opts], dtype=np.float64)
        vols = surf.vol(taus, strikes, fwds)
        for i, f, v in zip(opts, fwds, vols, strict=True):
            quotes[i.name] = {"mark_iv": float(v), "underlying_price": float(f)}
    for i in listed.values():
        if i.kind is InstrumentKind.FUTURE:
            quotes[i.name] = {"mark_price": curve.forward(i.expiry)}
        elif i.kind is InstrumentKind.SPOT or (
                i.kind is InstrumentKind.PERPETUAL and not i.is_inverse):
            quotes[i.name] = {"mark_price": point.index_price}
    market = MarketSnapshot(
        w, {a: point.index_price, "USDC": 1.0}, quotes,
        vol_surfaces={a: surf}, source=src, index_perpetuals=[a],
    )
    return market, std
