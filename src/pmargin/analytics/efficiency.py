"""Capital efficiency of accounts under a margin model.

Per account (USD unless said otherwise):

* ``im_over_gross_notional`` = IM / gross notional (``sum |q| x index``; options count one coin
  per contract); NaN for an account without positions.
* ``utilisation`` = IM / equity; NaN when equity <= 0 (an account with no equity has no
  capital to utilise: it is bankrupt, see its health).
* ``free_collateral_usd`` = equity - IM (negative = shortfall).
* ``capital_freed_usd`` = IM under isolated margin - IM under the model: the collateral the
  model releases compared with margining every position on its own
  (``deribit-sm-isolated`` for coin-margined books, ``linear-sm-isolated`` for stablecoin ones).

* ``liquidation_distance`` (one account, :func:`account_efficiency`): the index moves, down
  and up, that take the account to MM, found by search on the model itself
  (:func:`pmargin.engine.distance.liquidation_distance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pmargin._typing import FloatArray
from pmargin.book import Book
from pmargin.engine.distance import liquidation_distance
from pmargin.market import STABLECOINS, MarketSnapshot
from pmargin.models import load_model
from pmargin.models.base import MarginModel
from pmargin.models.result import BookMarginResult
from pmargin.portfolio import Portfolio

__all__ = ["Efficiency", "account_efficiency", "efficiency", "isolated_reference"]


def isolated_reference(margin_currency: str) -> str:
    """Name of the isolated model capital is compared with for a margin currency."""
    return "linear-sm-isolated" if margin_currency.upper() in STABLECOINS \
        else "deribit-sm-isolated"


@dataclass(frozen=True)
class Efficiency:
    """Capital-efficiency figures of every account of a book (arrays ``(n_accounts,)``, USD).

    Attributes
    ----------
    model, isolated_model : str
        The model measured and the isolated reference.
    account_ids : list of str
        Row labels.
    gross_notional_usd, initial_margin_usd, maintenance_margin_usd, equity_usd : ndarray
        Exposure, requirements and equity.
    im_over_gross_notional, utilisation : ndarray
        Ratios (NaN where undefined, see the module notes).
    free_collateral_usd : ndarray
        Equity minus IM.
    isolated_initial_margin_usd, capital_freed_usd : ndarray
        IM under the isolated reference and the difference with the model's IM.
    """

    model: str
    isolated_model: str
    account_ids: list[str]
    gross_notional_usd: FloatArray
    initial_margin_usd: FloatArray
    maintenance_margin_usd: FloatArray
    equity_usd: FloatArray
    im_over_gross_notional: FloatArray
    utilisation: FloatArray
    free_collateral_usd: FloatArray
    isolated_initial_margin_usd: FloatArray
    capital_freed_usd: FloatArray

    def totals(self) -> dict[str, float]:
        """Book totals: sums, and ratios of sums (IM / notional, IM / positive equity)."""
        im = float(self.initial_margin_usd.sum())
        notional = float(self.gross_notional_usd.sum())
        eq = float(np.maximum(self.equity_usd, 0.0).sum())
        iso = float(self.isolated_initial_margin_usd.sum())
        return {
            "gross_notional_usd": notional,
            "initial_margin_usd": im,
            "maintenance_margin_usd": float(self.maintenance_margin_usd.sum()),
            "equity_usd": float(self.equity_usd.sum()),
            "im_over_gross_notional": im / notional if notional > 0 else float("nan"),
            "utilisation": im / eq if eq > 0 else float("nan"),
            "free_collateral_usd": float(self.free_collateral_usd.sum()),
            "isolated_initial_margin_usd": iso,
            "capital_freed_usd": iso - im,
            "capital_freed_share": (iso - im) / iso if iso > 0 else float("nan"),
        }

    def row(self, i: int) -> dict[str, Any]:
        """Figures of account ``i`` as a JSON-ready mapping (NaN as None)."""
        def f(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "model": self.model,
            "isolated_model": self.isolated_model,
            "gross_notional_usd": f(self.gross_notional_usd[i]),
            "initial_margin_usd": f(self.initial_margin_usd[i]),
            "equity_usd": f(self.equity_usd[i]),
            "im_over_gross_notional": f(self.im_over_gross_notional[i]),
            "utilisation": f(self.utilisation[i]),
            "free_collateral_usd": f(self.free_collateral_usd[i]),
            "isolated_initial_margin_usd": f(self.isolated_initial_margin_usd[i]),
            "capital_freed_usd": f(self.capital_freed_usd[i]),
        }


def gross_notional(book: Book, market: MarketSnapshot) -> FloatArray:
    """``sum |q| x index`` of each account in USD, shape ``(n_accounts,)``."""
    px = np.array([market.index_price(i.underlying) for i in book.instruments], np.float64)
    return np.asarray(abs(book.positions.tocsr()) @ px, dtype=np.float64).ravel()


def efficiency(model: MarginModel, book: Book, market: MarketSnapshot,
               result: BookMarginResult | None = None,
               isolated: BookMarginResult | None = None) -> Efficiency:
    """Capital-efficiency figures of every account of ``book`` under ``model``.

    Parameters
    ----------
    model : MarginModel
        The model measured.
    book : Book
        Accounts.
    market : MarketSnapshot
        Market.
    result : BookMarginResult, optional
        ``model``'s result for ``book`` at ``market`` if already computed (e.g. a book
        engine's ``result``); computed otherwise.
    isolated : BookMarginResult, optional
        The isolated reference's result, if already computed.

    Returns
    -------
    Efficiency
        Per-account figures.
    """
    res = result if result is not None else model.compute(book, market)
    iso_name = isolated_reference(book.margin_currency)
    iso = isolated if isolated is not None else load_model(iso_name).compute(book, market)
    usd = res.mc_usd
    im = res.initial_margin * usd
    eq = res.equity * usd
    notional = gross_notional(book, market)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(notional > 0, im / np.where(notional > 0, notional, 1.0), np.nan)
        util = np.where(eq > 0, im / np.where(eq > 0, eq, 1.0), np.nan)
    iso_im = iso.initial_margin * iso.mc_usd
    return Efficiency(model.name, iso_name, list(res.account_ids), notional, im,
                      res.maintenance_margin * usd, eq, ratio, util, eq - im, iso_im,
                      iso_im - im)


def account_efficiency(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot
                       ) -> dict[str, Any]:
    """Efficiency figures and liquidation distance of one account (JSON-ready).

    Parameters
    ----------
    model : MarginModel
        The model.
    portfolio : Portfolio
        The account.
    market : MarketSnapshot
        Market.

    Returns
    -------
    dict
        :meth:`Efficiency.row` plus ``liquidation_distance``: by underlying, ``down_pct`` /
        ``up_pct`` (index move in percent to MM; None when no move reaches it) and reasons.
    """
    out = efficiency(model, Book.from_portfolios([portfolio]), market).row(0)
    dist = liquidation_distance(model, market, portfolio)
    out["liquidation_distance"] = {u: d.to_json() for u, d in dist.items()}
    return out
