"""Command-line interface (typer). Thin: parse, call the library, render."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from pmargin.errors import PmarginError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="pmargin: margin for crypto options portfolios.")
conformance_app = typer.Typer(no_args_is_help=True, help="Run published conformance vectors.")
params_app = typer.Typer(no_args_is_help=True, help="List, show and validate model presets.")
app.add_typer(conformance_app, name="conformance")
app.add_typer(params_app, name="params")

console = Console(width=160)

MarketOpt = Annotated[Path, typer.Option("--market", "-m", help="Market: JSON or Deribit CSV(.gz)")]
ModelOpt = Annotated[str, typer.Option("--model", help="Preset name or TOML file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


@app.command()
def margin(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio JSON")],
    market: MarketOpt,
    model: ModelOpt = "deribit-sm",
    mode: Annotated[str | None, typer.Option(help="cross | isolated (standard margin)")] = None,
    as_json: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print the risk matrix")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG heat map and P&L profile")] = None,
) -> None:
    """Compute the initial and maintenance margin of a portfolio."""
    from pmargin.market.loaders import load_market
    from pmargin.models import PortfolioMarginModel, load_model
    from pmargin.portfolio import load_portfolio

    try:
        mdl = load_model(model, mode=mode)
        mkt = load_market(market)
        pf = load_portfolio(portfolio)
        res = mdl.margin(pf, mkt)
        if plot is not None:
            if not isinstance(mdl, PortfolioMarginModel):
                raise PmarginError(f"--plot needs a portfolio-margin model, not {mdl.name}")
            from pmargin.reports.plots import plot_margin

            plot_margin(res, mdl, pf, mkt, plot)
    except PmarginError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(_jsonable(res.to_dict()), indent=2))
        return
    from pmargin.reports.tables import print_margin

    print_margin(console, res, explain=explain)
    if plot is not None:
        console.print(f"plot written to {plot}")


@app.command()
def greeks(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio JSON")],
    market: MarketOpt,
    as_json: JsonOpt = False,
) -> None:
    """Print position and portfolio Greeks."""
    from pmargin.market.loaders import load_market
    from pmargin.portfolio import load_portfolio
    from pmargin.reports.greeks import portfolio_greeks
    from pmargin.reports.tables import print_frame

    try:
        pf = load_portfolio(portfolio)
        frame = portfolio_greeks(pf, load_market(market))
    except PmarginError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(_jsonable({
            "positions": frame.drop(index="TOTAL").reset_index().to_dict(orient="records"),
            "total": frame.loc["TOTAL"].to_dict(),
        }), indent=2))
        return
    print_frame(console, frame, "Greeks: delta in coin, gamma per USD, vega USD per vol point, "
                "theta USD per day")


@conformance_app.command("run")
def conformance_run(
    paths: Annotated[list[Path], typer.Argument(help="Vector files or folders")],
    as_json: JsonOpt = False,
) -> None:
    """Run vectors (venue-neutral format or Derive PMRM_2 cases, auto-detected)."""
    from pmargin.conformance.vectors import run_paths
    from pmargin.reports.tables import print_conformance

    try:
        outcomes = run_paths(paths)
    except PmarginError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(_jsonable([o.__dict__ for o in outcomes]), indent=2))
    else:
        print_conformance(console, outcomes)
    if not outcomes or not all(o.passed for o in outcomes):
        raise typer.Exit(1)


@params_app.command("list")
def params_list() -> None:
    """List shipped presets."""
    from pmargin.models.params import list_presets, load_params

    for name in list_presets():
        if name == "derive-pm2":
            console.print(f"{name:12s} portfolio (Derive PMRM_2 model)")
            continue
        p = load_params(name)
        console.print(f"{name:12s} {p.model:10s} {p.source.splitlines()[0][:110]}", highlight=False)


@params_app.command("show")
def params_show(name: str) -> None:
    """Show a preset's validated parameters as JSON."""
    from pmargin.models.params import load_params, params_digest

    try:
        p = load_params(name)
    except PmarginError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps({"digest": params_digest(p), **p.model_dump(mode="json")}, indent=2))


@params_app.command("validate")
def params_validate(paths: list[Path]) -> None:
    """Validate preset TOML files."""
    from pmargin.models.params import load_params

    bad = 0
    for p in paths:
        try:
            load_params(p)
            console.print(f"ok {p}")
        except PmarginError as exc:
            bad += 1
            console.print(f"[red]invalid[/red] {p}: {exc}")
    if bad:
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """Margin example portfolios on the latest real Deribit snapshot (make run)."""
    from pmargin.demo import run_demo

    run_demo(console)


def main() -> None:
    """Entry point of the ``pmargin`` console script."""
    app()


@app.command()
def hedges(
    market: Annotated[Path | None, typer.Option("--market", "-m", help="Market file")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown table here")] = None,
) -> None:
    """Compare cross standard margin and portfolio margin on classic hedged structures."""
    from pmargin.demo import demo_market
    from pmargin.market.loaders import load_market
    from pmargin.reports.hedges import hedge_markdown, hedge_table
    from pmargin.reports.tables import print_frame

    try:
        if market is None:
            mkt, label = demo_market()
        else:
            mkt, label = load_market(market), market.name
        table = hedge_table(mkt)
    except PmarginError as exc:
        _fail(exc)
        return
    print_frame(console, table.drop(columns=["legs"]).round(2), f"Initial margin (USD), {label}")
    if markdown is not None:
        markdown.write_text(hedge_markdown(table, label))
        console.print(f"written {markdown}")


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (not part of the tests).")
app.add_typer(bench_app, name="bench")


@bench_app.command("book")
def bench_book(
    accounts: Annotated[int, typer.Option(help="Number of accounts")] = 100_000,
    preset: Annotated[str, typer.Option(help="Margin model preset")] = "deribit-pm",
    runs: Annotated[int, typer.Option(help="Repetitions of the full recompute")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Full-book recompute versus its floor, a per-account loop, and what-if latency."""
    from dataclasses import asdict

    from pmargin.book.bench import run_book_bench
    from pmargin.book.generator import chain_universe
    from pmargin.demo import demo_market
    from pmargin.models._pm_kernels import NUMBA_ENABLED

    market, _ = demo_market()
    res = asdict(run_book_bench(market, chain_universe(market, "BTC"), accounts, preset=preset,
                                runs=runs))
    res["numba"] = NUMBA_ENABLED
    if as_json:
        typer.echo(json.dumps(_jsonable(res)))
        return
    for k, v in res.items():
        console.print(f"{k:22s} {v}", highlight=False)


if __name__ == "__main__":
    main()
