"""Standard (rules-based, per position) margin: Deribit SM for inverse and linear instruments.

Currently implemented
---------------------
* Options (per contract, settlement currency; linear: rates times the forward ``S``):
  short call IM ``max(a - OTM/S, b) + mark``, MM ``c + mark``; short put MM
  ``max(c, r * mark) + mark``, IM ``max(max(a - OTM/S, b) + mark, MM)``; long IM = mark value,
  long MM = 0 (a long option has no loan value for new risk, but its value counts in equity).
* Futures and perpetuals: ``rate = base + per_coin * |size|`` of the net size in coin, times the
  size (inverse, coin) or the notional (linear, USD).
* Open orders margined as if filled, worse side (all buys or all sells), including the equity
  lost by filling at the limit instead of the mark.
* Collateral haircuts (IM and MM) added to the requirement.
* Cross margin: one pool (equity = collateral + position values; requirement = sum of
  per-position requirements). Isolated margin is its own model over these rules
  (:mod:`pmargin.models.isolated`, ``deribit-sm-isolated``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray
from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models.accounts import (
    collateral_haircuts,
    collateral_value,
    open_orders_im,
    position_values,
    values_and_greeks,
)
from pmargin.models.base import MarginModel, position_frame
from pmargin.models.params import SMParams
from pmargin.models.result import AccountMargin, BookMarginResult
from pmargin.models.valuation import KIND_OPTION, InstrumentTable
from pmargin.portfolio import Portfolio

__all__ = ["SMPrepared", "StandardMarginModel"]

@dataclass(frozen=True)
class SMPrepared:
    """What one market update prepares for standard margin: the instrument table."""

    table: InstrumentTable
    market: MarketSnapshot


class StandardMarginModel(MarginModel):
    """Deribit-style standard margin (``deribit-sm``, ``linear-sm`` presets)."""

    params: SMParams

    def __init__(self, params: SMParams) -> None:
        super().__init__(params)

    # ------------------------------------------------------------------ per-unit rules
    def _unit_rules(self, t: InstrumentTable) -> tuple[FloatArray, ...]:
        """Per-column rules: short IM, short MM, long IM (settlement currency), futures rates.

        The futures rates are ``im_base, im_per_coin, mm_base, mm_per_coin`` of every column.
        """
        n = t.n
        a = np.empty(n)
        b = np.empty(n)
        c = np.empty(n)
        r = np.empty(n)
        f_im0 = np.empty(n)
        f_imk = np.empty(n)
        f_mm0 = np.empty(n)
        f_mmk = np.empty(n)
        for j, u in enumerate(t.underlying):
            o = self.params.option_rules(str(u))
            fr = self.params.future_rules(str(u))
            a[j], b[j], c[j], r[j] = o.short_im_rate, o.short_im_min_rate, o.short_mm_rate, \
                o.put_mm_mark_rate
            f_im0[j], f_imk[j], f_mm0[j], f_mmk[j] = fr.im_base, fr.im_per_coin, fr.mm_base, \
                fr.mm_per_coin
        s = t.forward
        m = t.settle_value()  # coin price (inverse) or USD mark (linear)
        scale = np.where(t.inverse, 1.0, s)  # linear: rates apply to S
        otm = np.where(t.is_call, np.maximum(t.strike - s, 0.0), np.maximum(s - t.strike, 0.0))
        base_im = np.maximum(a - otm / s, b) * scale + m
        mm_call = c * scale + m
        mm_put = np.maximum(c * scale, r * m) + m
        mm_short = np.where(t.is_call, mm_call, mm_put)
        im_short = np.where(t.is_call, base_im, np.maximum(base_im, mm_put))
        long_im = m
        return im_short, mm_short, long_im, f_im0, f_imk, f_mm0, f_mmk

    def cell_requirements(self, positions: sp.csr_matrix, t: InstrumentTable
                          ) -> tuple[FloatArray, FloatArray]:
        """IM and MM of every nonzero cell of ``positions`` (margin currency, CSR data order).

        Parameters
        ----------
        positions : scipy.sparse.csr_matrix
            Net quantities.
        t : InstrumentTable
            Market inputs.

        Returns
        -------
        (ndarray, ndarray)
            IM and MM per stored cell.
        """
        im_short, mm_short, long_im, f_im0, f_imk, f_mm0, f_mmk = self._unit_rules(t)
        pos = sp.csr_matrix(positions)
        q = pos.data
        j = pos.indices
        aq = np.abs(q)
        opt = t.kind[j] == KIND_OPTION
        short = q < 0
        im_opt = np.where(short, aq * im_short[j], aq * long_im[j])
        mm_opt = np.where(short, aq * mm_short[j], 0.0)
        notional = np.where(t.inverse[j], aq, aq * t.forward[j])
        im_fut = (f_im0[j] + f_imk[j] * aq) * notional
        mm_fut = (f_mm0[j] + f_mmk[j] * aq) * notional
        conv = np.where(t.expired[j], 0.0, t.to_mc()[j])  # settled: no requirement
        return np.where(opt, im_opt, im_fut) * conv, np.where(opt, mm_opt, mm_fut) * conv

    def _requirement(self, positions: sp.csr_matrix, t: InstrumentTable
                     ) -> tuple[FloatArray, FloatArray]:
        pos = sp.csr_matrix(positions)
        im_c, mm_c = self.cell_requirements(pos, t)
        rows = np.repeat(np.arange(pos.shape[0]), np.diff(pos.indptr))
        n = pos.shape[0]
        return (np.bincount(rows, weights=im_c, minlength=n).astype(np.float64),
                np.bincount(rows, weights=mm_c, minlength=n).astype(np.float64))

    # ------------------------------------------------------------------ book
    def prepare(self, book: Book, market: MarketSnapshot) -> SMPrepared:
        """Collect market inputs of the columns of ``book`` (once per market update)."""
        return SMPrepared(self.table(book, market), market)

    def evaluate(self, prep: SMPrepared, book: Book) -> BookMarginResult:
        """Compute standard margin of every account (cross aggregation).

        Parameters
        ----------
        prep : SMPrepared
            Output of :meth:`prepare` for a book with the same columns.
        book : Book
            Accounts.

        Returns
        -------
        BookMarginResult
            Per-account IM, MM, equity and components ``positions_im``, ``positions_mm``,
            ``open_orders``, ``collateral_haircut_im``, ``collateral_haircut_mm``.
        """
        t, market = prep.table, prep.market
        pos = sp.csr_matrix(book.positions)
        im_pos, mm_pos = self._requirement(pos, t)
        orders_im = open_orders_im(
            book, t, im_pos, lambda side, rows: self._requirement(pos[rows] + side[rows], t)[0])
        h_im, h_mm = collateral_haircuts(book, market, self.params.haircuts)
        values, greeks = values_and_greeks(pos, book.entry_notional, t)
        equity = collateral_value(book, market) + values
        return self.book_result(
            book, t.mc_price, im_pos + orders_im + h_im, mm_pos + h_mm, equity,
            {
                "positions_im": im_pos,
                "positions_mm": mm_pos,
                "open_orders": orders_im,
                "collateral_haircut_im": h_im,
                "collateral_haircut_mm": h_mm,
            },
            greeks,
        )

    # ------------------------------------------------------------------ one account
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> AccountMargin:
        """Compute and explain standard (cross) margin of one account.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        AccountMargin
            Margins and per-position breakdown.
        """
        book = Book.from_portfolios([portfolio])
        res = self.compute(book, market)
        t = self.table(book, market)
        pos = sp.csr_matrix(book.positions)
        im_c, mm_c = self.cell_requirements(pos, t)
        vals = position_values(pos, book.entry_notional, t).data
        frame = position_frame(book, pos, t, value=vals, initial_margin=im_c,
                               maintenance_margin=mm_c)
        return self.account_margin(res, "cross", frame)
