"""Figures (matplotlib, Agg backend): risk-matrix heat map and P&L-versus-spot profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.models.portfolio_margin import PortfolioMarginModel
from pmargin.models.result import AccountMargin
from pmargin.portfolio import Portfolio

__all__ = ["cascade_figure", "plot_cascade", "plot_margin"]


def _pyplot(path: str | Path) -> Any:
    """matplotlib.pyplot on the Agg backend, or an input error naming the missing extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - optional extra
        raise InvalidInput("plot", str(path),
                           "needs matplotlib (pip install pmargin[plot])") from exc
    return plt


def plot_margin(res: AccountMargin, model: PortfolioMarginModel, portfolio: Portfolio,
                market: MarketSnapshot, path: str | Path) -> Path:
    """Draw the risk matrix heat map and the P&L-versus-spot profile into a PNG.

    Parameters
    ----------
    res : AccountMargin
        Result of ``model.margin(portfolio, market)``.
    model : PortfolioMarginModel
        The model (used to revalue the profile on a fine spot grid).
    portfolio : Portfolio
        The account.
    market : MarketSnapshot
        Market data.
    path : str or Path
        Output PNG.

    Returns
    -------
    Path
        The written file.
    """
    plt = _pyplot(path)
    if res.risk_matrix is None:
        raise InvalidInput("model", res.model, "has no risk matrix to plot")
    units = sorted({u for u, _ in res.risk_matrix.index})
    fig, axes = plt.subplots(len(units), 2, figsize=(12, 4.5 * len(units)), squeeze=False)
    for r, u in enumerate(units):
        mat = res.risk_matrix.loc[u]
        ax = axes[r, 0]
        data = mat.to_numpy().T
        lim = float(np.nanmax(np.abs(data))) or 1.0
        im = ax.imshow(data, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(mat.index)), [f"{m * 100:+.1f}%" for m in mat.index], rotation=45)
        ax.set_yticks(range(len(mat.columns)), [f"vol {c}" for c in mat.columns])
        ax.set_title(f"{u} risk matrix: P&L ({res.margin_currency})")
        fig.colorbar(im, ax=ax)
        moves = np.linspace(float(mat.index.min()) * 2, float(mat.index.max()) * 2, 81)
        pnl = [model.margin(portfolio, market.bumped({u: float(m)})).equity - res.equity
               for m in moves]
        ax2 = axes[r, 1]
        ax2.plot(moves * 100, pnl, label="P&L, vol unchanged")
        ax2.axhline(-res.initial_margin, color="red", linestyle="--", label="-IM")
        ax2.axhline(-res.maintenance_margin, color="orange", linestyle=":", label="-MM")
        ax2.axvline(0.0, color="grey", linewidth=0.5)
        ax2.set_xlabel(f"{u} move (%)")
        ax2.set_ylabel(f"P&L ({res.margin_currency})")
        ax2.set_title(f"{u} P&L versus spot")
        ax2.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cascade_figure(results: list[Any]) -> Any:
    """Figure of cascades per margin mode: index path, liquidated notional and bad debt by round.

    Parameters
    ----------
    results : list of CascadeResult
        Cascades to compare (e.g. isolated, cross, portfolio on the same book and shock).

    Returns
    -------
    matplotlib.figure.Figure
        Three panels; the round axes have whole-number ticks. Close it with ``plt.close``.
    """
    plt = _pyplot("cascade")
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    width = 0.8 / max(len(results), 1)
    centre = (len(results) - 1) / 2  # each round's group of bars is centred on its tick
    for k, r in enumerate(results):
        rounds = [x.round for x in r.rounds]
        axes[0].plot(rounds, [x.index for x in r.rounds], marker="o", label=r.label)
        axes[1].bar([x + width * (k - centre) for x in rounds],
                    [x.liquidated_notional_usd / 1e6 for x in r.rounds], width=width,
                    label=r.label)
        axes[2].bar([x + width * (k - centre) for x in rounds],
                    [x.bad_debt_usd / 1e6 for x in r.rounds], width=width, label=r.label)
    axes[0].set_title("index after each round (USD)")
    axes[1].set_title("liquidated underlying notional (USD m)")
    axes[2].set_title("bad debt (USD m)")
    for ax in axes:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        ax.legend()
    fig.tight_layout()
    return fig


def plot_cascade(results: list[Any], path: str | Path) -> Path:
    """Write :func:`cascade_figure` of ``results`` to ``path`` (PNG, SVG, PDF, ...).

    Returns
    -------
    Path
        The written file.
    """
    plt = _pyplot(path)
    fig = cascade_figure(results)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
