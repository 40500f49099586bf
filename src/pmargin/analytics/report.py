"""Backtest reports people read (issue 12.5): CSV and Markdown tables, figures.

:func:`write_report` writes into a folder:

* ``summary.csv``: every model × portfolio × horizon × margin (IM/MM) with its coverage tests;
* ``daily.csv.gz``: margins and realised losses by day, model and portfolio;
* ``summary.md``: per model and horizon, over the portfolios, what failed in plain words, then
  the IM table per portfolio;
* ``procyclicality.csv`` / ``procyclicality.md``: peak-to-trough ratio and largest 1- and 5-day
  IM increases per model and portfolio, over the run and in each crash window;
* ``coverage_by_model.png``: IM exceedances per model and portfolio (heat map, both horizons);
* ``margin_vs_loss_<model>.png``: per portfolio, the model's IM against the realised 1-day loss
  through time, exceedances marked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pmargin.analytics.backtest import BacktestResult, summarise
from pmargin.analytics.coverage import CoverageParams, load_coverage_params
from pmargin.analytics.procyclicality import procyclicality
from pmargin.errors import InvalidInput

__all__ = ["model_overview", "plot_coverage", "plot_margin_vs_loss", "summary_markdown",
           "write_report"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - optional extra
        raise InvalidInput("--report", None,
                           "figures need matplotlib (pip install pmargin[plot])") from exc
    return plt


def model_overview(summary: pd.DataFrame, margin: str = "IM") -> pd.DataFrame:
    """Per model and horizon: how many portfolios fail each test (one row per model, horizon).

    Columns: ``portfolios``, ``exceedances`` (total), ``too_many`` (portfolios where Kupiec
    rejects with too many exceedances: under-margined), ``too_few`` (rejects with too few:
    margin above the level), ``independence_fail``, ``cc_fail``, ``red_windows``,
    ``yellow_windows``, ``worst_zone``, ``median_margin_usd`` (median over the portfolios of
    their average margin; the market maker's is far larger than the others').
    """
    s = summary[summary["margin"] == margin]
    order = {"green": 0, "yellow": 1, "red": 2}
    rows = []
    for (model, h), g in s.groupby(["model", "horizon_days"], sort=False):
        rows.append({
            "model": model, "horizon_days": h, "portfolios": len(g),
            "exceedances": int(g["exceedances"].sum()),
            "too_many": int(g["too_many"].sum()),
            "too_few": int(g["too_few"].sum()),
            "independence_fail": int(g["independence_reject"].sum()),
            "cc_fail": int(g["cc_reject"].sum()),
            "red_windows": int(g["windows_red"].sum()),
            "yellow_windows": int(g["windows_yellow"].sum()),
            "worst_zone": max(g["worst_zone"], key=lambda z: order[z]),
            "median_margin_usd": float(g["average_margin_usd"].median()),
        })
    return pd.DataFrame(rows)


def _md(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float | np.floating):
                x = float(v)
                cells.append(f"{x:,.0f}" if abs(x) >= 1000 else format(x, floatfmt))
            else:
                cells.append(str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _plain_words(over: pd.DataFrame, n_days: int, p_exc: float) -> list[str]:
    lines = []
    for _, r in over.iterrows():
        fails = []
        if r["too_many"]:
            fails.append(f"under-margined: too many exceedances for {r['too_many']} of "
                         f"{r['portfolios']} portfolios (Kupiec)")
        if r["independence_fail"]:
            fails.append(f"clustered exceedances for {r['independence_fail']} (Christoffersen)")
        if r["red_windows"]:
            fails.append(f"{r['red_windows']} red 250-day windows")
        verdict = "; ".join(fails) if fails else "never under-margined (Kupiec, Christoffersen, "\
            "traffic light)"
        if r["too_few"]:
            verdict += (f"; margin above the {100 - 100 * p_exc:g} % level (too few exceedances, "
                        f"Kupiec) for {r['too_few']}")
        lines.append(f"* **{r['model']}**, {r['horizon_days']}-day period: {verdict} "
                     f"({r['exceedances']} IM exceedances in {r['portfolios']} x {n_days} "
                     f"portfolio-days; worst window {r['worst_zone']}).")
    return lines


def summary_markdown(result: BacktestResult, summary: pd.DataFrame,
                     params: CoverageParams | None = None) -> str:
    """The Markdown report: run, verdicts in plain words, model and portfolio tables."""
    p = params or load_coverage_params()
    sp = result.spec
    over = model_overview(summary)
    head = [
        f"# Margin backtest: {sp.asset}, {result.dates[0].date()} .. {result.dates[-1].date()}",
        "",
        f"{len(result.dates)} days at {sp.hour:02d}:00 UTC, every {sp.step_days} day(s); "
        f"{sp.settlement} instruments in {sp.margin_currency} accounts; margin periods of risk "
        f"{', '.join(str(h) for h in sp.horizons_days)} day(s); coverage level {p.level:.0%}, "
        f"tests at {p.significance:.0%} significance, traffic light per "
        f"{p.traffic_light.window} days. Proxy-vol days (before DVOL): "
        f"{int(result.vol_is_proxy.sum())}.",
        "",
    ]
    if result.skipped:
        head += ["Skipped models (refused the book):", ""]
        head += [f"* {m}: {why}" for m, why in result.skipped.items()] + [""]
    if result.available_from:
        head += ["Models tested from a later day (no margin before it):", ""]
        head += [f"* {m}: from {d[:10]}" for m, d in result.available_from.items()] + [""]
    if result.errors:
        head += ["Models that failed on some days (counted as zero margin):", ""]
        head += [f"* {m}: {n} day(s), first: {result.first_error.get(m, '')}"
                 for m, n in result.errors.items()] + [""]
    head += ["## Verdicts (initial margin)", ""]
    head += _plain_words(over, len(result.dates), 1.0 - p.level)
    head += ["", "## Models (initial margin, over the portfolios)", "", _md(over), ""]
    cols = ["model", "portfolio", "horizon_days", "exceedances", "coverage", "kupiec_p",
            "too_many",
            "independence_p", "cc_p", "worst_zone", "mean_shortfall", "max_shortfall",
            "average_margin_usd"]
    for label in ("IM", "MM"):
        t = summary[summary["margin"] == label][cols]
        head += [f"## {label} by model and portfolio", "",
                 "Shortfalls are in the margin currency; average margin in USD.", "",
                 _md(t), ""]
    return "\n".join(head)


def plot_coverage(summary: pd.DataFrame, path: Path) -> Path:
    """Heat map of IM exceedances per model (rows) and portfolio (columns), one per horizon."""
    plt = _pyplot()
    s = summary[summary["margin"] == "IM"]
    hs = sorted(s["horizon_days"].unique())
    models = list(dict.fromkeys(s["model"]))
    pfs = list(dict.fromkeys(s["portfolio"]))
    fig, axes = plt.subplots(1, len(hs), figsize=(7 * len(hs), 0.45 * len(models) + 3),
                             squeeze=False)
    for ax, h in zip(axes[0], hs, strict=True):
        g = s[s["horizon_days"] == h].pivot(index="model", columns="portfolio",
                                            values="exceedances").loc[models, pfs]
        n = int(s["n"].iloc[0])
        im = ax.imshow(g.to_numpy(), cmap="Reds", aspect="auto")
        for (r, c), v in np.ndenumerate(g.to_numpy()):
            ax.text(c, r, str(int(v)), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(pfs)), pfs, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(models)), models, fontsize=8)
        ax.set_title(f"IM exceedances, {h}-day period ({n} days; 1 % = {n / 100:.0f})")
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_margin_vs_loss(result: BacktestResult, model: str, path: Path,
                        horizon: int | None = None) -> Path:
    """IM of one model against the realised loss, per portfolio, exceedances marked."""
    plt = _pyplot()
    j = result.models.index(model)
    h = horizon if horizon is not None else min(result.loss)
    pfs = result.portfolios
    ncol = 2
    nrow = (len(pfs) + 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(14, 2.6 * nrow), squeeze=False, sharex=True)
    t = result.dates.tz_convert(None)
    for k, pf in enumerate(pfs):
        ax = axes[k // ncol][k % ncol]
        m = result.im[:, j, k] * result.mc_usd
        lo = result.loss[h][:, k] * result.mc_usd
        ax.plot(t, lo, color="0.6", lw=0.5, label=f"realised {h}-day loss")
        ax.plot(t, m, color="tab:blue", lw=0.8, label="IM")
        ex = lo > m
        ax.scatter(t[ex], lo[ex], color="tab:red", s=8, zorder=3, label="exceedance")
        ax.set_title(f"{pf}: {int(ex.sum())} exceedances", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("USD", fontsize=7)
    for k in range(len(pfs), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{model}: initial margin vs realised {h}-day loss ({result.spec.asset})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def procyclicality_markdown(pc: pd.DataFrame) -> str:
    """Procyclicality by model: median over portfolios, whole run and each crash window.

    Parameters
    ----------
    pc : DataFrame
        Output of :func:`pmargin.analytics.procyclicality.procyclicality`.

    Returns
    -------
    str
        Markdown: one table per window (history first), one row per model.
    """
    lines = ["# Procyclicality of initial margin (USD)", "",
             "Median over the portfolios of: peak-to-trough ratio (max / min margin), largest "
             "1-day and 5-day relative margin increase. Per portfolio: procyclicality.csv.", ""]
    cols = ["peak_to_trough", "max_1d_increase", "max_5d_increase"]
    for window, g in pc.groupby("window", sort=False):
        lines += [f"## {window} ({g['start'].iloc[0]} to {g['end'].iloc[0]})", "",
                  _md(g.groupby("model", sort=False)[cols].median().reset_index()), ""]
    return "\n".join(lines)


def write_report(result: BacktestResult, folder: Path, params: CoverageParams | None = None,
                 figures: bool = True) -> list[Path]:
    """Write the tables and figures of a run into ``folder`` (created if needed).

    Parameters
    ----------
    result : BacktestResult
        A run.
    folder : Path
        Output folder; its parent must exist.
    params : CoverageParams, optional
        Coverage settings (default ``coverage.toml``).
    figures : bool, optional
        Also draw the figures (needs matplotlib).

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput("--report", str(folder), "is a file; give a folder")
    if not folder.parent.is_dir():
        raise InvalidInput("--report", str(folder), f"folder {str(folder.parent)!r} does not exist")
    folder.mkdir(exist_ok=True)
    summary = summarise(result, params)
    out = [folder / "summary.csv", folder / "daily.csv.gz", folder / "summary.md"]
    summary.to_csv(out[0], index=False)
    result.daily_frame().to_csv(out[1], index=False, compression="gzip")
    out[2].write_text(summary_markdown(result, summary, params), encoding="utf-8")
    pc = procyclicality(result)
    out += [folder / "procyclicality.csv", folder / "procyclicality.md"]
    pc.to_csv(out[-2], index=False)
    out[-1].write_text(procyclicality_markdown(pc), encoding="utf-8")
    if figures:
        out.append(plot_coverage(summary, folder / "coverage_by_model.png"))
        for model in result.models:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)  # a preset path names the model
            out.append(plot_margin_vs_loss(result, model, folder / f"margin_vs_loss_{safe}.png"))
    return out
