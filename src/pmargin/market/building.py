"""Building a snapshot's derived data from its validated quotes.

Forward curves, option rows (forward and implied vol of every option) and vol surfaces.

The rules are those of ``docs/market-data.md`` (sections "Forward curve" and "Vol surface").
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from pmargin.conventions import year_fraction
from pmargin.instruments import Instrument, InstrumentKind
from pmargin.market.curves import ForwardCurve
from pmargin.market.implied_vols import solve_implied_vols
from pmargin.market.quotes import Quote
from pmargin.market.surface import Smile, VolSurface

__all__ = ["OptionRow", "build_curves", "build_option_rows", "build_surfaces", "explicit_marks"]


@dataclass(frozen=True, slots=True)
class OptionRow:
    """One option with market data: its quote, time to expiry, forward and implied vol.

    Prices in USD per unit of underlying, ``tau`` in ACT/365 years, ``iv`` decimal (given, or
    solved from the mark when ``iv_solved``).
    """

    name: str
    instrument: Instrument
    tau: float
    mark_price: float | None
    iv: float
    iv_solved: bool
    underlying_price: float | None
    forward: float
    bid: float | None
    ask: float | None
    open_interest: float | None
    volume: float | None

    @property
    def expiry(self) -> datetime:
        """Expiry (aware UTC)."""
        assert self.instrument.expiry is not None
        return self.instrument.expiry

    @property
    def strike(self) -> float:
        """Strike in USD."""
        assert self.instrument.strike is not None
        return self.instrument.strike


def _median(values: list[float]) -> float:
    return values[0] if len(values) == 1 else float(statistics.median(values))


def explicit_marks(quotes: Mapping[str, Quote], insts: Mapping[str, Instrument]
                   ) -> dict[str, float]:
    """Marks (USD) of the futures, perpetuals and spot instruments among ``quotes``."""
    out: dict[str, float] = {}
    for name, inst in insts.items():
        if inst.kind is not InstrumentKind.OPTION:
            mark = quotes[name].mark_price
            assert mark is not None
            out[name] = mark
    return out


def build_curves(vt: datetime, index: Mapping[str, float], quotes: Mapping[str, Quote],
                 insts: Mapping[str, Instrument]) -> dict[str, ForwardCurve]:
    """Forward curve of every underlying with an index.

    Pillars: a listed future's mark (median of inverse and linear), else the median
    ``underlying_price`` of that expiry's options; perpetual mark: inverse, else linear, else
    none (the curve then uses the index).
    """
    futs: dict[str, dict[datetime, list[float]]] = {u: {} for u in index}
    opt_fwds: dict[str, dict[datetime, list[float]]] = {u: {} for u in index}
    perps: dict[str, dict[bool, float]] = {u: {} for u in index}
    for name, inst in insts.items():
        q = quotes[name]
        u = inst.underlying
        if inst.kind is InstrumentKind.OPTION:
            if q.underlying_price is not None:
                assert inst.expiry is not None
                opt_fwds[u].setdefault(inst.expiry, []).append(q.underlying_price)
            continue
        assert q.mark_price is not None
        if inst.kind is InstrumentKind.FUTURE:
            assert inst.expiry is not None
            futs[u].setdefault(inst.expiry, []).append(q.mark_price)
        elif inst.kind is InstrumentKind.PERPETUAL:
            perps[u].setdefault(inst.is_inverse, q.mark_price)
    curves: dict[str, ForwardCurve] = {}
    for u, s in index.items():
        p = perps[u]
        curves[u] = ForwardCurve(
            u, s, vt,
            futures={e: _median(v) for e, v in futs[u].items()},
            perpetual=p.get(True, p.get(False)),
            option_forwards={e: _median(v) for e, v in opt_fwds[u].items()},
        )
    return curves


def build_option_rows(vt: datetime, quotes: Mapping[str, Quote],
                      insts: Mapping[str, Instrument], curves: Mapping[str, ForwardCurve]
                      ) -> dict[str, OptionRow]:
    """Forward and implied vol of every option (the IVs of mark-only options solved at once).

    The forward is the option's ``underlying_price``, else the curve forward of its expiry; an
    option without ``mark_iv`` gets the Black-76 implied vol of its ``mark_price`` from
    :func:`pmargin.market.implied_vols.solve_implied_vols`.
    """
    names: list[str] = []
    taus: list[float] = []
    fwds: list[float] = []
    for name, inst in insts.items():
        if inst.kind is not InstrumentKind.OPTION:
            continue
        assert inst.expiry is not None
        q = quotes[name]
        names.append(name)
        taus.append(year_fraction(vt, inst.expiry))
        fwds.append(q.underlying_price if q.underlying_price is not None
                    else curves[inst.underlying].forward(inst.expiry))
    solve = [i for i, n in enumerate(names) if quotes[n].mark_iv is None]
    prices = [quotes[names[i]].mark_price for i in solve]
    strikes = [insts[names[i]].strike for i in solve]
    solved = solve_implied_vols(
        np.array(prices, dtype=np.float64),  # mark_iv or mark_price is checked: never None here
        [fwds[i] for i in solve],
        np.array(strikes, dtype=np.float64),
        [taus[i] for i in solve],
        [insts[names[i]].is_call for i in solve],
        [f"market.instruments[{names[i]!r}].mark_price" for i in solve],
    )
    ivs: dict[int, float] = dict(zip(solve, solved.tolist(), strict=True))
    rows: dict[str, OptionRow] = {}
    for i, name in enumerate(names):
        q = quotes[name]
        iv = q.mark_iv if q.mark_iv is not None else ivs[i]
        rows[name] = OptionRow(name, insts[name], taus[i], q.mark_price, iv, i in ivs,
                               q.underlying_price, fwds[i], q.bid_price, q.ask_price,
                               q.open_interest, q.volume)
    return rows


def _is_otm(row: OptionRow, forward: float) -> bool:
    return row.instrument.is_call == (row.strike >= forward)


def build_smile(expiry: datetime, rows: list[OptionRow], forward: float) -> Smile:
    """Smile of one expiry: one pillar per strike.

    The pillar of a strike is the out-of-the-money option first, then inverse before linear,
    then by name.
    """
    best: dict[float, OptionRow] = {}
    for r in sorted(rows, key=lambda r: (not _is_otm(r, forward), not r.instrument.is_inverse,
                                         r.name)):
        best.setdefault(r.strike, r)
    strikes = sorted(best)
    return Smile(expiry, rows[0].tau, forward, np.array(strikes),
                 np.array([best[k].iv for k in strikes]))


def build_surfaces(vt: datetime, rows: Mapping[str, OptionRow],
                   curves: Mapping[str, ForwardCurve]) -> dict[str, VolSurface]:
    """Vol surface of every underlying of ``curves`` from its option rows (possibly empty)."""
    by_exp: dict[str, dict[datetime, list[OptionRow]]] = {u: {} for u in curves}
    for r in rows.values():
        by_exp[r.instrument.underlying].setdefault(r.expiry, []).append(r)
    return {
        u: VolSurface(u, vt, [build_smile(e, rs, curves[u].forward(e)) for e, rs in exps.items()],
                      curves[u])
        for u, exps in by_exp.items()
    }
