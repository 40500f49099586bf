"""``derive-pm2``: Derive PMRM_2 behind the common margin-model interface.

Each account of a book is mapped onto one Derive subaccount (:mod:`.adapter`) and margined with
:func:`~pmargin.models.derive.pm2.compute_derive_pm2`. The figures have the meaning they have in
every pmargin model: ``initial_margin`` and ``maintenance_margin`` are requirements (amounts
>= 0 in the margin currency) compared against ``equity`` (collateral plus position values at
the marks, as for every model). Derive's requirement is ``PortfolioMTM - IM`` in its own terms,
``-(W lossFactor + contingencies)``, converted from Derive's cash units into the margin
currency at market prices. Open orders are margined as in every pmargin model (as if filled, on
the worse side).

Derive's methodology is one account at a time (scenario P&L is not linear in positions: static
discounts depend on the sign of each expiry's shocked value, skew scenarios take ``-|P&L|`` per
expiry), so :meth:`DerivePM2Model.evaluate` loops over accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book import Book
from pmargin.errors import InvalidInput, ParamsError
from pmargin.market import MarketSnapshot
from pmargin.models.accounts import (
    collateral_value,
    open_orders_im,
    position_values,
    values_and_greeks,
)
from pmargin.models.base import MarginModel, position_frame
from pmargin.models.derive.adapter import DeriveColumns, account_inputs, derive_columns
from pmargin.models.derive.params import DeriveAccountParams, DerivePM2Params
from pmargin.models.derive.pm2 import DerivePM2Inputs, DerivePM2Result, compute_derive_pm2
from pmargin.models.result import AccountMargin, BookMarginResult, Columns
from pmargin.portfolio import Portfolio

__all__ = ["COMPONENTS", "DerivePM2Model", "DerivePrepared"]

COMPONENTS = (
    "worst_case", "forward_contingency", "naked_short_mm", "naked_short_im",
    "perp_contingency_mm", "perp_contingency_im", "collateral_haircut_mm",
    "collateral_haircut_im", "oracle_contingency", "open_orders",
)
"""Components of a result (margin currency, >= 0): ``worst_case`` is ``-W`` before the loss
factors (``forward_contingency`` is ``-FC``, part of ``W``); ``*_mm`` parts are charged in MM
and IM, ``*_im`` parts are the IM totals (MM part included)."""


@dataclass(frozen=True)
class DerivePrepared:
    """What one market update prepares: the columns' Derive data and the market."""

    columns: DeriveColumns
    market: MarketSnapshot


class DerivePM2Model(MarginModel):
    """Derive PMRM_2 portfolio margin (``derive-pm2``), one Derive subaccount per account."""

    params: DerivePM2Params

    def __init__(self, params: DerivePM2Params) -> None:
        if params.account is None:
            raise ParamsError("account", None, "the derive-pm2 model needs an [account] table "
                                               "(cash currency, rate, confidence, haircuts)")
        super().__init__(params)
        self.account: DeriveAccountParams = params.account

    # ------------------------------------------------------------------ book
    def prepare(self, book: Book, market: MarketSnapshot) -> DerivePrepared:
        """Build the instrument table and the Derive column data (mark vols) of ``book``.

        Derive margins USD-stable accounts (its cash is USDC): a coin-margined book is refused
        rather than margined in USD, which would charge the coin collateral's own fall.
        """
        from pmargin.market import STABLECOINS

        if book.margin_currency not in STABLECOINS:
            raise InvalidInput("margin_currency", book.margin_currency,
                               "Derive PMRM_2 margins USDC accounts; a coin-margined account "
                               "cannot be margined with it (use a USDC margin currency)")
        return DerivePrepared(derive_columns(self.table(book, market), self.account), market)

    def _factor(self, prep: DerivePrepared, book: Book) -> float:
        """Margin-currency units per Derive cash unit."""
        m = prep.market
        return m.collateral_price(self.account.cash_currency) / m.collateral_price(
            book.margin_currency)

    def _inputs(self, prep: DerivePrepared, book: Book, pos: sp.csr_matrix,
                values: sp.csr_matrix, row: int) -> DerivePM2Inputs:
        """Derive inputs of account ``row`` holding ``pos[row]``.

        ``values`` are the book's position values (margin currency); a cell that ``pos`` adds
        (an order filled) is worth 0 at the mark, the fill price being charged by the order
        cost.
        """
        t = prep.columns.table
        lo, hi = pos.indptr[row], pos.indptr[row + 1]
        cols = pos.indices[lo:hi]
        value_usd = np.asarray(values[row, cols].toarray(), dtype=np.float64).ravel() \
            * t.mc_price if cols.size else np.zeros(0)
        return account_inputs(prep.columns, prep.market, self.account, cols, pos.data[lo:hi],
                              value_usd, book.collateral_currencies, book.collateral[row],
                              book.margin_currency, where=f"accounts[{book.account_ids[row]}].")

    def _margins(self, prep: DerivePrepared, book: Book, pos: sp.csr_matrix,
                 rows: IntArray | range) -> list[DerivePM2Result]:
        values = position_values(sp.csr_matrix(book.positions), book.entry_notional,
                                 prep.columns.table)
        return [compute_derive_pm2(self._inputs(prep, book, pos, values, int(r)), self.params)
                for r in rows]

    def evaluate(self, prep: DerivePrepared, book: Book) -> BookMarginResult:
        """Margin every account of ``book`` (one Derive computation per account).

        Parameters
        ----------
        prep : DerivePrepared
            Output of :meth:`prepare` for a book with the same columns.
        book : Book
            Accounts.

        Returns
        -------
        BookMarginResult
            IM and MM (requirements, margin currency), equity and the components of
            :data:`COMPONENTS`.
        """
        t = prep.columns.table
        f = self._factor(prep, book)
        pos = sp.csr_matrix(book.positions)
        results = self._margins(prep, book, pos, range(book.n_accounts))
        im = np.array([r.initial_margin for r in results], dtype=np.float64) * f
        mm = np.array([r.maintenance_margin for r in results], dtype=np.float64) * f
        orders_im = open_orders_im(book, t, im, lambda side, rows: np.array(
            [r.initial_margin for r in self._margins(prep, book, sp.csr_matrix(pos + side), rows)]
        ) * f)

        def comp(fn: Any) -> FloatArray:
            return np.array([fn(r) for r in results], dtype=np.float64) * f

        components = {
            "worst_case": comp(lambda r: -r.worst_loss),
            "forward_contingency": comp(lambda r: -r.forward_contingency),
            "naked_short_mm": comp(lambda r: -r.mm_option_cont),
            "naked_short_im": comp(lambda r: -(r.mm_option_cont + r.im_option_cont)),
            "perp_contingency_mm": comp(lambda r: -r.mm_perp_cont),
            "perp_contingency_im": comp(lambda r: -(r.mm_perp_cont + r.im_perp_cont)),
            "collateral_haircut_mm": comp(lambda r: -r.mm_base_cont),
            "collateral_haircut_im": comp(lambda r: -(r.mm_base_cont + r.im_base_cont)),
            "oracle_contingency": comp(lambda r: -r.oracle_cont),
            "open_orders": orders_im,
        }
        values, greeks = values_and_greeks(pos, book.entry_notional, t)
        return self.book_result(book, t.mc_price, im + orders_im, mm,
                                collateral_value(book, prep.market) + values, components, greeks)

    # ------------------------------------------------------------------ one account
    def native(self, portfolio: Portfolio, market: MarketSnapshot) -> DerivePM2Result:
        """Derive's own result for one account (Derive units and signs, every intermediate).

        Parameters
        ----------
        portfolio : Portfolio
            The account (open orders are ignored: Derive margins positions).
        market : MarketSnapshot
            Market data.

        Returns
        -------
        DerivePM2Result
            ``im``/``mm`` in Derive's convention, ``initial_margin``/``maintenance_margin`` as
            requirements, in Derive cash units.
        """
        book = Book.from_portfolios([portfolio])
        prep = self.prepare(book, market)
        return self._margins(prep, book, sp.csr_matrix(book.positions), range(1))[0]

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> AccountMargin:
        """Compute and explain Derive PMRM_2 margin of one account.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        AccountMargin
            Requirements, equity and components (margin currency); the scenario table (one row
            per Derive scenario: spot shock - 1, vol direction, dampening as ``weight``, tails
            as ``extended``, P&L after static discount and dampening); the regular scenarios as
            a risk matrix; the binding term as ``worst_scenario``; per position the quantity,
            mark, value and Derive ``MarkVol``.
        """
        book = Book.from_portfolios([portfolio])
        prep = self.prepare(book, market)
        res = self.evaluate(prep, book)
        pos = sp.csr_matrix(book.positions)
        native = self._margins(prep, book, pos, range(1))[0]
        f = self._factor(prep, book)
        t = prep.columns.table
        held = sorted({str(t.underlying[j]) for j in pos.indices})
        unit = held[0] if held else book.margin_currency
        rows = []
        for s, pnl in zip(self.params.scenarios, native.scenario_pnl, strict=True):
            rows.append({
                "underlying": unit,
                "name": f"x{s.spot_shock:g} vol {s.vol_shock}",
                "kind": s.kind,
                "price_shock": s.spot_shock - 1.0,
                "vol_shock": s.vol_shock,
                "weight": s.dampening,
                "extended": s.kind == "tail",
                "pnl": float(pnl) * f,
            })
        scen = Columns.from_records(rows)
        regular = [r for r in rows if r["kind"] == "regular"]
        matrix = (Columns.from_records(regular, pivot=(["underlying", "price_shock"],
                                                       "vol_shock", "pnl")) if regular else None)
        if native.worst_all_scenarios == "fwd_contingency":
            worst: dict[str, Any] = {"name": "basis contingency", "kind": "fwd_contingency",
                                     "pnl": native.forward_contingency * f}
        else:
            k = int(np.argmin(native.scenario_pnl))
            worst = {"index": k, **{c: rows[k][c] for c in ("name", "kind", "price_shock",
                                                             "vol_shock", "weight", "pnl")}}
        vals = position_values(pos, book.entry_notional, t).data
        frame = position_frame(book, pos, t, value=vals,
                               derive_mark_vol=prep.columns.mark_vol[pos.indices])
        return self.account_margin(res, "portfolio", frame, scenarios=scen, risk_matrix=matrix,
                                   worst_scenario={unit: worst})
