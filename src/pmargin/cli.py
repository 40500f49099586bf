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



@app.command()
def liquidate(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio JSON")],
    market: MarketOpt,
    model: ModelOpt = "deribit-pm",
    mode: Annotated[str | None, typer.Option(help="cross | isolated (standard margin)")] = None,
    hedge_first: Annotated[bool, typer.Option(help="Neutralise delta with the perpetual first")]
    = False,
    execution: Annotated[str, typer.Option(
        help="market (surgical plan) | takeover | auction (whole-account slices)")] = "market",
    as_json: JsonOpt = False,
) -> None:
    """Plan the surgical liquidation of an account (steps, sizes, prices, margin after each)."""
    from pmargin.liquidation.planner import load_planner_params, plan_liquidation
    from pmargin.market.loaders import load_market
    from pmargin.models import load_model
    from pmargin.portfolio import load_portfolio

    if execution in ("takeover", "auction"):
        _liquidate_slices(portfolio, market, model, mode, execution, as_json)
        return
    if execution != "market":
        _fail(PmarginError(f"--execution must be market, takeover or auction, was {execution!r}"))
        return
    try:
        mdl = load_model(model, mode=mode)
        params = load_planner_params().model_copy(update={"delta_hedge_first": hedge_first})
        plan = plan_liquidation(load_portfolio(portfolio), load_market(market), mdl, params)
    except PmarginError as exc:
        _fail(exc)
        return
    data = {
        "account_id": plan.account_id, "model": plan.model,
        "margin_currency": plan.margin_currency, "needed": plan.needed,
        "healthy_after": plan.healthy, "stuck": plan.stuck,
        "before": {"equity": plan.before_equity, "initial_margin": plan.before_initial_margin,
                   "maintenance_margin": plan.before_maintenance_margin,
                   "target": plan.before_target},
        "steps": [s.__dict__ for s in plan.steps],
        "total_penalty": plan.total_penalty, "total_slippage": plan.total_slippage,
        "liquidated_notional_usd": plan.liquidated_notional_usd,
        "positions_after": [{"instrument": p.instrument.name, "quantity": p.quantity}
                            for p in (plan.final.positions if plan.final else ())],
    }
    if as_json:
        typer.echo(json.dumps(_jsonable(data), indent=2))
        return
    from rich.table import Table

    mc = plan.margin_currency
    console.print(f"before: equity {plan.before_equity:.8g} {mc}, MM "
                  f"{plan.before_maintenance_margin:.8g}, target {plan.before_target:.8g}"
                  + ("" if plan.needed else " - no liquidation needed"), highlight=False)
    table = Table(title=f"liquidation plan ({plan.model}), amounts in {mc}")
    for col in ("step", "trades (instrument, quantity, price USD)", "cost", "penalty", "equity",
                "IM", "MM", "target"):
        table.add_column(col, justify="right")
    for s in plan.steps:
        trades = "; ".join(f"{n} {q:+.6g} @ {px:,.2f}" for n, q, px in s.trades)
        table.add_row(s.label, trades, f"{s.slippage:.6g}", f"{s.penalty:.6g}",
                      f"{s.equity:.8g}", f"{s.initial_margin:.8g}",
                      f"{s.maintenance_margin:.8g}", f"{s.target:.8g}")
    console.print(table)
    console.print(f"healthy after: {plan.healthy}; stuck: {plan.stuck}", highlight=False)


def _liquidate_slices(portfolio: Path, market: Path, model: str, mode: str | None,
                      execution: str, as_json: bool) -> None:
    """Takeover or Dutch auction of whole-account slices (see pmargin.liquidation.execution)."""
    from dataclasses import asdict

    from pmargin.liquidation.execution import auction_account, takeover_account
    from pmargin.market.loaders import load_market
    from pmargin.models import load_model
    from pmargin.portfolio import load_portfolio

    try:
        mdl = load_model(model, mode=mode)
        pf, mkt = load_portfolio(portfolio), load_market(market)
        out = (auction_account(pf, mkt, mdl) if execution == "auction"
               else takeover_account(pf, mkt, mdl))
    except PmarginError as exc:
        _fail(exc)
        return
    data = {
        "method": out.method, "account_id": out.account, "equity": out.equity,
        "positions_value": out.positions_value, "maintenance_margin": out.maintenance_margin,
        "fraction_sold": out.fraction_sold, "conservation_error": str(out.conservation_error),
        "auction": None if out.auction is None else {
            "fee": str(out.auction.fee), "insolvent": out.auction.insolvent,
            "terminated": out.auction.terminated,
            "fills": [{k: str(v) for k, v in asdict(f).items()} for f in out.auction.fills]},
        "takeover": None if out.takeover is None else {
            k: str(v) for k, v in asdict(out.takeover).items() if k != "transfers"},
    }
    if as_json:
        typer.echo(json.dumps(_jsonable(data), indent=2))
        return
    console.print_json(json.dumps(_jsonable(data)))


@app.command()
def stress(
    accounts: Annotated[int, typer.Option(help="Accounts in the generated book")] = 300,
    shock: Annotated[float, typer.Option(help="Initial BTC move, e.g. -0.3")] = -0.3,
    model: Annotated[str | None, typer.Option(
        help="Only this mode: portfolio | cross | isolated (default: all three)")] = None,
    seed: Annotated[int, typer.Option(help="Book generator seed")] = 3,
    loss_mode: Annotated[str, typer.Option(help="adl | socialise")] = "adl",
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the rounds")] = None,
) -> None:
    """Shock a generated book and run the liquidation cascade under each margin mode."""
    from pmargin.liquidation.cascade import load_cascade_params
    from pmargin.liquidation.stress import STRESS_MODES, run_stress

    modes = [model] if model else list(STRESS_MODES)
    try:
        for m in modes:
            if m not in STRESS_MODES:
                raise PmarginError(f"--model must be one of {list(STRESS_MODES)}, was {m!r}")
        params = load_cascade_params().model_copy(update={"loss_mode": loss_mode})
        results = run_stress(accounts, shock, modes, seed=seed, params=params)
    except PmarginError as exc:
        _fail(exc)
        return
    out = [r.to_dict() for r in results]
    if plot is not None:
        from pmargin.reports.plots import plot_cascade

        plot_cascade(results, plot)
    if as_json:
        typer.echo(json.dumps(_jsonable(out if len(out) > 1 else out[0]), indent=2))
        return
    from rich.table import Table

    for r in out:
        t = Table(title=f"{r['label']} ({r['model']}): {r['accounts']} accounts, shock "
                        f"{shock:+.0%}, final index {r['final_index']:,.0f}")
        for col in ("round", "index", "in liquidation", "stuck", "liquidated USD", "bad debt USD",
                    "fund used USD", "ADL USD", "socialised USD", "impact"):
            t.add_column(col, justify="right")
        for x in r["rounds"]:
            t.add_row(str(x["round"]), f"{x['index']:,.0f}", str(x["accounts_in_liquidation"]),
                      str(x["accounts_stuck"]), f"{x['liquidated_notional_usd']:,.0f}",
                      f"{x['bad_debt_usd']:,.0f}", f"{x['insurance_fund_used_usd']:,.0f}",
                      f"{x['adl_usd']:,.0f}", f"{x['socialised_usd']:,.0f}",
                      f"{x['price_impact']:+.4f}")
        console.print(t)
        console.print(f"conservation error: {r['conservation_error']}", highlight=False)
    if plot is not None:
        console.print(f"plot written to {plot}")


# ---------------------------------------------------------------------------------- service
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the margin service.")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL (default PMARGIN_DATABASE_URL or sqlite:///var/pmargin.db)")] = None,
    venue: Annotated[Path | None, typer.Option(help="Venue TOML (default: shipped)")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Seed the demo venue on first start")]
    = False,
) -> None:
    """Run the margin service (HTTP API; docs at /docs)."""
    from pmargin.service.server import run

    try:
        run(host, port, database_url, venue, demo)
    except PmarginError as exc:
        _fail(exc)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="trader | operator | risk | admin")],
    account: Annotated[str | None, typer.Option(help="Account of a trader key")] = None,
    database_url: Annotated[str | None, typer.Option(help="Database URL")] = None,
) -> None:
    """Create an API key (printed once; only its hash is stored)."""
    from pmargin.service.server import create_key

    try:
        typer.echo(create_key(role, account, database_url))
    except PmarginError as exc:
        _fail(exc)


if __name__ == "__main__":
    main()
