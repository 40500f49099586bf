"""Command-line interface (typer). Thin: parse, call the library, render.

The edge of the program is :class:`_Group`: a bad input (any :class:`~pmargin.errors.PmarginError`,
an unreadable or non-UTF-8 file, a corrupt archive, a usage error) is one line on stderr and exit
status 2; an unexpected exception is one line and status 1 (``PMARGIN_TRACEBACK=1`` shows the
traceback). JSON is printed only with ``--json`` and follows :mod:`pmargin.reports.jsonout`.
Options shared by several commands are defined once below (``MarketOpt``, ``ModelOpt``, ...), so
adding a flag to several commands is a local change. See ``docs/cli.md``.
"""

from __future__ import annotations

import math
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from typer.core import TyperGroup

try:  # typer >= 0.25 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from pmargin.errors import InvalidInput, PmarginError

if TYPE_CHECKING:
    from rich.console import Console

TRACEBACK_ENV = "PMARGIN_TRACEBACK"
"""Set to 1 to let unexpected exceptions propagate with their traceback."""

BAD_INPUT = 2
INTERNAL_ERROR = 1

from pmargin._numba import DISABLE_ENV_VAR as NUMBA_ENV  # noqa: E402 - a light module

SINGLE_ACCOUNT_COMMANDS = frozenset({"margin", "greeks", "liquidate"})
"""Commands that margin one account: they run on the NumPy reference kernels unless
``PMARGIN_DISABLE_NUMBA`` is set explicitly (loading Numba and its cached machine code costs more
than the whole computation for one account; both paths are tested to agree)."""

# --------------------------------------------------------------------------------------------
# the edge: every failure is one line on stderr


def _one_line(text: str) -> str:
    line = "; ".join(s.strip() for s in str(text).splitlines() if s.strip())
    return line.replace("Value error, ", "")


def _load(loader: Callable[[Path], Any], path: Path, option: str) -> Any:
    """Call ``loader(path)``; a file that is not UTF-8 text is an input error naming it."""
    try:
        return loader(path)
    except UnicodeDecodeError as exc:
        raise InvalidInput(option, str(path), f"is not UTF-8 text ({exc.reason} at byte "
                                              f"{exc.start})") from exc


def _describe_os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc) or type(exc).__name__
    name = exc.filename
    return f"{name}: {what}" if name else what


def _die(code: int, message: str) -> NoReturn:
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code)


class _Group(TyperGroup):
    """Top-level group: turns exceptions into one line on stderr and an exit status."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_exceptions.ClickException):
            raise
        except PmarginError as exc:
            _die(BAD_INPUT, str(exc))
        except UnicodeDecodeError as exc:
            _die(BAD_INPUT, f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start})")
        except OSError as exc:
            _die(BAD_INPUT, _describe_os_error(exc))
        except (EOFError, zlib.error) as exc:
            _die(BAD_INPUT, f"an input file is truncated or corrupt ({exc})")
        except Exception as exc:
            if os.environ.get(TRACEBACK_ENV) == "1":
                raise
            _die(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc} "
                                 f"(this is a bug; set {TRACEBACK_ENV}=1 for the traceback)")

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        """Run the command; usage errors become one line on stderr (exit status 2)."""
        argv = sys.argv[1:] if args is None else list(args)
        if not argv or "--help" in argv:
            _fill_model_names(self)
        command = next((a for a in argv if not a.startswith("-")), None)
        numpy_only = command in SINGLE_ACCOUNT_COMMANDS and NUMBA_ENV not in os.environ
        if numpy_only:
            os.environ[NUMBA_ENV] = "1"  # read when the kernels' modules are first imported
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message(), err=True)
            code = exc.exit_code
        except click_exceptions.ClickException as exc:
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see {ctx.command_path} --help)"
            typer.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo("aborted", err=True)
            code = 1
        else:
            code = rv if isinstance(rv, int) else 0
        finally:
            if numpy_only:
                os.environ.pop(NUMBA_ENV, None)
        if not standalone_mode:
            return code
        sys.exit(code)


# --------------------------------------------------------------------------------------------
# lazily created terminal console and model names for the help


@cache
def _get_console() -> Console:
    from rich.console import Console

    return Console(width=160)


class _LazyConsole:
    """Proxy to a rich Console created on first use (keeps ``import pmargin.cli`` light)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_get_console(), name)


console: Any = _LazyConsole()


MODELS_HELP = "{models}"
"""Placeholder in help texts, replaced by the names of :func:`pmargin.models.list_models` when a
help page is shown (so that starting the CLI does not import the models)."""


def _fill_model_names(command: Any) -> None:
    """Replace :data:`MODELS_HELP` in the help of ``command``, its options and subcommands."""
    from pmargin.models import list_models

    names = ", ".join(list_models())
    stack = [command]
    while stack:
        cmd = stack.pop()
        if isinstance(getattr(cmd, "help", None), str):
            cmd.help = cmd.help.replace(MODELS_HELP, names)
        for param in getattr(cmd, "params", ()):
            if isinstance(getattr(param, "help", None), str):
                param.help = param.help.replace(MODELS_HELP, names)
        stack.extend(getattr(cmd, "commands", {}).values())


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("pmargin")
        except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
            v = "unknown (not installed)"
        typer.echo(f"pmargin {v}")
        raise typer.Exit(0)


app = typer.Typer(
    cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help=f"pmargin: margin for crypto options portfolios. Models: {MODELS_HELP}.",
)
conformance_app = typer.Typer(no_args_is_help=True, help="Run published conformance vectors.")
params_app = typer.Typer(no_args_is_help=True, help="List, show and validate model presets.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (not part of the tests).")
app.add_typer(conformance_app, name="conformance")
app.add_typer(params_app, name="params")
app.add_typer(bench_app, name="bench")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit")] = False,
) -> None:
    """Margin for crypto options portfolios."""


# --------------------------------------------------------------------------------------------
# options shared by several commands

PortfolioArg = Annotated[Path, typer.Argument(
    help="Portfolio JSON", exists=True, dir_okay=False, readable=True)]
MarketOpt = Annotated[Path, typer.Option(
    "--market", "-m", help="Market: JSON or Deribit CSV(.gz)", exists=True, dir_okay=False,
    readable=True)]
OptionalMarketOpt = Annotated[Path | None, typer.Option(
    "--market", "-m", help="Market file (default: the latest Deribit snapshot in ../shared)",
    exists=True, dir_okay=False, readable=True)]
ModelOpt = Annotated[str, typer.Option(
    "--model", help=f"Model: one of {MODELS_HELP}, or a preset TOML file")]
UnlistedOpt = Annotated[bool, typer.Option(
    "--price-unlisted", help="Price instruments the market does not list from its vol surface "
    "(reported as model-priced); without it they are an error")]
SettleOpt = Annotated[bool, typer.Option(
    "--settle-expired", help="Value expired positions at the market's settlement_prices "
    "(reported as settled); without it they are an error")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (only JSON) instead of tables")]
PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", help="Write a figure to this file (.png, .svg, .pdf, ...)")]


def _emit_json(obj: Any) -> None:
    from pmargin.reports.jsonout import dumps

    typer.echo(dumps(obj))


def _image_types() -> list[str]:
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as exc:  # pragma: no cover - optional extra
        raise InvalidInput("--plot", None, "needs matplotlib (pip install pmargin[plot])") from exc
    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_output_path(path: Path | None, option: str,
                      suffixes: Callable[[], list[str]] | None = None) -> None:
    """Refuse an output file that cannot be written, before any work is done.

    Parameters
    ----------
    path : Path or None
        File to write (None: nothing to check).
    option : str
        Option name, for the message (``--plot``).
    suffixes : callable, optional
        Returns the accepted file extensions (without the dot).

    Raises
    ------
    InvalidInput
        The path is a folder, its folder does not exist or is not writable, or its extension is
        not supported.
    """
    if path is None:
        return
    if path.is_dir():
        raise InvalidInput(option, str(path), "is a folder; give a file name inside it")
    parent = path.parent
    if not parent.is_dir():
        raise InvalidInput(option, str(path), f"folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(option, str(path), "is not writable")
    if suffixes is not None:
        ok = suffixes()
        ext = path.suffix.lower().lstrip(".")
        if ext not in ok:
            raise InvalidInput(option, str(path), f"unsupported file type {path.suffix or '(none)'}"
                               f"; use one of {', '.join('.' + s for s in ok)}")


def _check_shock(shock: float) -> None:
    if not math.isfinite(shock) or shock <= -1.0:
        raise InvalidInput("--shock", shock, "must be a finite relative move above -1 (-100%)")


# --------------------------------------------------------------------------------------------
# commands


@app.command()
def margin(
    portfolio: PortfolioArg,
    market: MarketOpt,
    model: ModelOpt = "deribit-sm",
    as_json: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print the risk matrix")] = False,
    plot: PlotOpt = None,
    price_unlisted: UnlistedOpt = False,
    settle_expired: SettleOpt = False,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Valuation time (ISO-8601 UTC) if later than the market data")] = None,
    max_age: Annotated[float | None, typer.Option(
        help="Largest age of the market data at --as-of, seconds (default in "
        "market_data.toml)")] = None,
    efficiency: Annotated[bool, typer.Option(
        "--efficiency", help="Add capital-efficiency figures: IM / gross notional, IM / equity, "
        "free collateral, capital freed versus isolated margin")] = False,
) -> None:
    """Compute the initial and maintenance margin of a portfolio."""
    from pmargin.market.loaders import load_market
    from pmargin.models import PortfolioMarginModel, load_model
    from pmargin.portfolio import load_portfolio

    check_output_path(plot, "--plot", _image_types if plot is not None else None)
    mdl = load_model(model)
    if plot is not None and not isinstance(mdl, PortfolioMarginModel):
        raise InvalidInput("--plot", str(plot), f"needs a portfolio-margin model, not {mdl.name}")
    mkt = _load(partial(load_market, price_unlisted=price_unlisted, settle_expired=settle_expired,
                        valuation_time=as_of, max_age=max_age), market, "--market")
    pf = _load(load_portfolio, portfolio, "portfolio")
    res = mdl.margin(pf, mkt)
    eff = _efficiency_row(mdl, pf, mkt) if efficiency else None
    written = None
    if plot is not None:
        from pmargin.reports.plots import plot_margin

        assert isinstance(mdl, PortfolioMarginModel)
        written = plot_margin(res, mdl, pf, mkt, plot)
    if as_json:
        from pmargin.reports.results import margin_json

        out = margin_json(res)
        if eff is not None:
            out["efficiency"] = eff
        _emit_json(out)
        return
    from pmargin.reports.tables import print_margin

    print_margin(console, res, explain=explain)
    if eff is not None:
        from pmargin.reports.systemic import print_efficiency

        print_efficiency(console, [eff])
    if written is not None:
        console.print(f"plot written to {written}", highlight=False)


def _efficiency_row(model: Any, portfolio: Any, market: Any) -> dict[str, Any]:
    from pmargin.analytics.efficiency import account_efficiency

    return account_efficiency(model, portfolio, market)


@app.command()
def greeks(portfolio: PortfolioArg, market: MarketOpt, as_json: JsonOpt = False,
           price_unlisted: UnlistedOpt = False, settle_expired: SettleOpt = False) -> None:
    """Print position and portfolio Greeks."""
    from pmargin.market.loaders import load_market
    from pmargin.portfolio import load_portfolio
    from pmargin.reports.greeks import portfolio_greeks

    pf = _load(load_portfolio, portfolio, "portfolio")
    frame = portfolio_greeks(pf, _load(partial(load_market, price_unlisted=price_unlisted,
                                               settle_expired=settle_expired),
                                       market, "--market"))
    if as_json:
        from pmargin.reports.results import greeks_json

        _emit_json(greeks_json(frame, pf.margin_currency))
        return
    from pmargin.reports.tables import print_frame

    print_frame(console, frame, "Greeks: delta in coin, gamma per USD, vega USD per vol point, "
                "theta USD per day")


@conformance_app.command("run")
def conformance_run(
    paths: Annotated[list[Path], typer.Argument(help="Vector files or folders", exists=True)],
    as_json: JsonOpt = False,
) -> None:
    """Run vectors (venue-neutral format or Derive PMRM_2 cases, auto-detected).

    Exit status 1 when a case fails or no case was found.
    """
    from pmargin.conformance.vectors import run_paths

    outcomes = run_paths(paths)
    if as_json:
        from pmargin.reports.results import conformance_json

        _emit_json(conformance_json(outcomes))
    else:
        from pmargin.reports.tables import print_conformance

        print_conformance(console, outcomes)
    if not outcomes or not all(o.passed for o in outcomes):
        raise typer.Exit(1)


@params_app.command("list")
def params_list(as_json: JsonOpt = False) -> None:
    """List shipped presets."""
    from pmargin.models import list_models, load_model

    rows = []
    for name in list_models():
        p = load_model(name).params.model_dump()
        source = str(p.get("source") or "")
        rows.append({"name": name, "model": str(p.get("model", "")),
                     "source": source.splitlines()[0] if source else ""})
    if as_json:
        _emit_json({"presets": rows})
        return
    width = max(len(r["name"]) for r in rows)
    kind_width = max(len(r["model"]) for r in rows)
    for r in rows:
        console.print(f"{r['name']:{width}s}  {r['model']:{kind_width}s}  {r['source'][:100]}",
                      highlight=False)


@params_app.command("show")
def params_show(
    name: Annotated[str, typer.Argument(help=f"Preset ({MODELS_HELP}) or TOML file")],
    as_json: JsonOpt = False,
) -> None:
    """Show a preset's validated parameters as JSON (the output is JSON with or without --json)."""
    from pmargin.models import load_model

    mdl = load_model(name)
    _emit_json({"digest": mdl.digest, **mdl.params.model_dump(mode="json")})


PARAM_KINDS = ("auto", "preset", "venue", "auction", "bidders", "cascade", "ledger", "liquidity",
               "planner", "guards")


def _param_kind(path: Path, kind: str) -> str:
    """The kind of parameter file: as given, or from a shipped file's name (else a preset)."""
    if kind != "auto":
        return kind
    stem = path.stem
    return stem if stem in PARAM_KINDS[2:] else "preset"


@params_app.command("validate")
def params_validate(
    paths: Annotated[list[Path], typer.Argument(help="Parameter TOML files")],
    kind: Annotated[str, typer.Option(
        help="File kind: auto (from the file name: venue.toml, auction.toml, ...; else a "
             "margin preset), preset, venue, auction, bidders, cascade, ledger, liquidity, "
             "planner, guards (feed guards)")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Validate parameter TOML files: margin presets, the venue file, liquidation settings.

    Exit status 2 when any is invalid.
    """
    from pmargin.feeds.guards import load_guard_params
    from pmargin.liquidation.settings import SETTINGS_LOADERS
    from pmargin.models import load_model
    from pmargin.service.config import load_venue

    if kind not in PARAM_KINDS:
        raise InvalidInput("--kind", kind, f"must be one of {', '.join(PARAM_KINDS)}")
    results = []
    for p in paths:
        k = _param_kind(p, kind)
        try:
            if k == "preset":
                load_model(p)
            elif k == "venue":
                load_venue(p)
            elif k == "guards":
                load_guard_params(p)
            else:
                SETTINGS_LOADERS[k](p)
            results.append({"path": str(p), "kind": k, "valid": True, "error": None})
        except (PmarginError, OSError, UnicodeDecodeError) as exc:
            msg = _describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            results.append({"path": str(p), "kind": k, "valid": False, "error": _one_line(msg)})
    if as_json:
        _emit_json({"files": results, "valid": all(r["valid"] for r in results)})
    else:
        for r in results:
            if r["valid"]:
                console.print(f"ok {r['path']} ({r['kind']})", highlight=False)
            else:
                typer.echo(f"invalid {r['path']} ({r['kind']}): {r['error']}", err=True)
    if not all(r["valid"] for r in results):
        raise typer.Exit(BAD_INPUT)


@app.command()
def demo() -> None:
    """Margin example portfolios on the latest real Deribit snapshot (comparison table)."""
    from pmargin.demo import run_demo

    run_demo(console)


@app.command()
def hedges(
    market: OptionalMarketOpt = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown table here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare cross standard margin and portfolio margin on classic hedged structures."""
    from pmargin.demo import demo_market
    from pmargin.market.loaders import load_market
    from pmargin.reports.hedges import hedge_markdown, hedge_table

    check_output_path(markdown, "--markdown")
    if market is None:
        mkt, label = demo_market()
    else:
        mkt, label = _load(load_market, market, "--market"), market.name
    table = hedge_table(mkt)
    if markdown is not None:
        markdown.write_text(hedge_markdown(table, label), encoding="utf-8")
    if as_json:
        from pmargin.reports.results import hedges_json

        _emit_json(hedges_json(table, label))
        return
    from pmargin.reports.tables import print_frame

    print_frame(console, table.drop(columns=["legs"]).round(2), f"Initial margin (USD), {label}")
    if markdown is not None:
        console.print(f"written {markdown}", highlight=False)


@bench_app.command("book")
def bench_book(
    accounts: Annotated[int, typer.Option(help="Number of accounts", min=1)] = 100_000,
    preset: Annotated[str, typer.Option(help=f"Margin model ({MODELS_HELP})")] = "deribit-pm",
    runs: Annotated[int, typer.Option(help="Repetitions of the full recompute", min=1)] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Full-book recompute versus its floor, a per-account loop, and what-if latency.

    A thin wrapper: the benchmark lives in the source checkout (``benchmarks/bench_book.py``),
    not in the installed library.
    """
    import importlib.util
    import sys

    from pmargin.models import load_model

    load_model(preset)  # an unknown preset fails before anything else
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_book.py"
    spec = importlib.util.spec_from_file_location("pmargin_benchmarks_book", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise PmarginError(f"bench book needs the pmargin source checkout ({path} not found)")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    from pmargin.reports.jsonout import to_jsonable

    data = to_jsonable(bench.bench_book(accounts, preset=preset, runs=runs))
    if as_json:
        _emit_json(data)
        return
    for k, v in data.items():
        console.print(f"{k:22s} {v}", highlight=False)


def _day(text: str | None, option: str) -> Any:
    """An ISO date or timestamp option as aware UTC (a bare date is 00:00 UTC)."""
    if text is None:
        return None
    from pmargin.conventions import parse_time

    t = text.strip()
    return parse_time(t + "T00:00:00Z" if len(t) == 10 else t, option)


@app.command()
def backtest(
    asset: Annotated[str, typer.Option(help="Underlying: BTC or ETH")] = "BTC",
    start: Annotated[str | None, typer.Option(
        help="First day, ISO date (default: start of the history, 2018-06-14)")] = None,
    end: Annotated[str | None, typer.Option(help="Last day, ISO date (default: end)")] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help=f"Model (repeatable; default every model: {MODELS_HELP})")] = None,
    portfolio: Annotated[list[str] | None, typer.Option(
        "--portfolio", help="Standard portfolio (repeatable; default all)")] = None,
    horizon: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Margin period of risk in days (repeatable; default 1 and 2)")] = None,
    settlement: Annotated[str, typer.Option(
        help="linear (USDC accounts, every model) or inverse (coin accounts)")] = "linear",
    jobs: Annotated[int, typer.Option(help="Worker processes", min=1)] = 1,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Write summary.csv, daily.csv.gz, summary.md and figures here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Backtest margin models on 2018-2026 history: coverage of realised losses.

    Standard portfolios are rolled through history daily; each day every model margins them
    and the margin is compared with the realised loss over the margin period of risk (full
    revaluation). See docs/validation.md.
    """
    from pmargin.analytics.backtest import BacktestSpec, run_backtest, summarise
    from pmargin.analytics.portfolios import PORTFOLIOS
    from pmargin.analytics.report import model_overview, write_report

    if report is not None and (report.exists() and not report.is_dir()):
        raise InvalidInput("--report", str(report), "is a file; give a folder")
    if report is not None and not report.parent.is_dir():
        raise InvalidInput("--report", str(report),
                           f"folder {str(report.parent)!r} does not exist")
    spec = BacktestSpec(
        asset=asset, start=_day(start, "--start"), end=_day(end, "--end"),
        horizons_days=tuple(horizon) if horizon else (1, 2),
        models=tuple(model) if model else None,
        portfolios=tuple(portfolio) if portfolio else PORTFOLIOS, settlement=settlement)
    result = run_backtest(spec, jobs=jobs)
    summary = summarise(result)
    written = write_report(result, report) if report is not None else []
    over = model_overview(summary)
    if as_json:
        from pmargin.reports.jsonout import to_jsonable

        _emit_json(to_jsonable({
            "asset": result.spec.asset, "days": len(result.dates),
            "first_day": result.dates[0].isoformat(), "last_day": result.dates[-1].isoformat(),
            "models": over.to_dict(orient="records"),
            "portfolios": summary.to_dict(orient="records"),
            "skipped": result.skipped, "errors": result.errors,
            "seconds": {"wall": result.wall_seconds, "stages_wall": result.timings,
                        "stages_cpu": result.cpu_seconds},
            "report": [str(p) for p in written]}))
        return
    from pmargin.reports.tables import print_frame

    print_frame(console, over.set_index(["model", "horizon_days"]).round(1),
                f"IM coverage by model, {result.spec.asset} "
                f"{result.dates[0].date()}..{result.dates[-1].date()} ({len(result.dates)} days)")
    for m, why in result.skipped.items():
        typer.echo(f"skipped {m}: {why}")
    typer.echo(f"{result.wall_seconds:.1f} s with {result.jobs} worker(s)")
    for p in written:
        typer.echo(f"written {p}")


Execution = Literal["market", "takeover", "auction"]


@app.command()
def liquidate(
    portfolio: PortfolioArg,
    market: MarketOpt,
    model: ModelOpt = "deribit-pm",
    hedge_first: Annotated[bool, typer.Option(help="Neutralise delta with the perpetual first")]
    = False,
    execution: Annotated[Execution, typer.Option(
        help="market (surgical plan) | takeover | auction (whole-account slices)")] = "market",
    as_json: JsonOpt = False,
    price_unlisted: UnlistedOpt = False,
    settle_expired: SettleOpt = False,
) -> None:
    """Plan the liquidation of an account (steps, sizes, prices, margin after each)."""
    from pmargin.market.loaders import load_market
    from pmargin.models import load_model
    from pmargin.portfolio import load_portfolio
    from pmargin.reports import results

    mdl = load_model(model)
    pf = _load(load_portfolio, portfolio, "portfolio")
    mkt = _load(partial(load_market, price_unlisted=price_unlisted,
                        settle_expired=settle_expired), market, "--market")
    if execution != "market":
        from pmargin.liquidation.execution import auction_account, takeover_account

        out = (auction_account(pf, mkt, mdl) if execution == "auction"
               else takeover_account(pf, mkt, mdl))
        data = results.slices_json(out)
        if as_json:
            _emit_json(results.liquidate_json(execution, None, data))
        else:
            results.print_slices(console, data)
        return
    from pmargin.liquidation.planner import load_planner_params, plan_liquidation

    params = load_planner_params().model_copy(update={"delta_hedge_first": hedge_first})
    plan = plan_liquidation(pf, mkt, mdl, params)
    if as_json:
        _emit_json(results.liquidate_json(execution, results.plan_json(plan), None))
        return
    results.print_plan(console, plan)


StressMode = Literal["portfolio", "cross", "isolated"]


@app.command()
def stress(
    accounts: Annotated[int, typer.Option(help="Accounts in the generated book", min=1)] = 300,
    shock: Annotated[float, typer.Option(help="Initial BTC move, e.g. -0.3")] = -0.3,
    model: Annotated[StressMode | None, typer.Option(
        help="Only this margin mode (default: isolated, cross and portfolio)")] = None,
    seed: Annotated[int, typer.Option(help="Book generator seed", min=0)] = 3,
    loss_mode: Annotated[Literal["adl", "socialise"], typer.Option(
        help="Who covers a deficit once the insurance fund is empty")] = "adl",
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Shock a generated book and run the liquidation cascade under each margin mode.

    ``accounts`` are the accounts of the generated book; isolated margin splits each of them into
    one sub-account per position, reported separately as ``isolated_sub_accounts``.
    """
    from pmargin.liquidation.cascade import load_cascade_params
    from pmargin.liquidation.stress import STRESS_MODES, run_stress
    from pmargin.reports.results import print_stress, stress_json

    _check_shock(shock)
    check_output_path(plot, "--plot", _image_types if plot is not None else None)
    modes = [model] if model else list(STRESS_MODES)
    params = load_cascade_params().model_copy(update={"loss_mode": loss_mode})
    from pmargin.demo import demo_market

    cascades = run_stress(accounts, shock, modes, demo_market()[0], seed=seed, params=params)
    data = stress_json(cascades, accounts=accounts, shock=shock, seed=seed, loss_mode=loss_mode)
    written = None
    if plot is not None:
        from pmargin.reports.plots import plot_cascade

        written = plot_cascade(cascades, plot)
    if as_json:
        _emit_json(data)
        return
    print_stress(console, data)
    if written is not None:
        console.print(f"plot written to {written}", highlight=False)


@app.command()
def audit(
    book: Annotated[Path | None, typer.Argument(
        help="Book JSON ({\"accounts\": [portfolio, ...]}) or one portfolio", exists=True,
        dir_okay=False, readable=True)] = None,
    generate: Annotated[int | None, typer.Option(
        "--generate", help="Audit a generated book of this many accounts instead", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Generator seed", min=0)] = 1,
    market: OptionalMarketOpt = None,
    models: Annotated[str | None, typer.Option(
        "--models", help=f"Comma-separated models (default: those of audit.toml); {MODELS_HELP}"
    )] = None,
    scenarios: Annotated[Path | None, typer.Option(
        help="Scenario file replacing the shipped audit.toml", exists=True, dir_okay=False,
        readable=True)] = None,
    fund: Annotated[float | None, typer.Option(
        "--fund", help="Insurance fund in USD for Cover-1/Cover-2 (default: cascade.toml)")]
    = None,
    database_url: Annotated[str | None, typer.Option(
        help="Audit a book of the margin service: its database (read, never written)")] = None,
    service_book: Annotated[str | None, typer.Option(
        help="With --database-url: the service's book id (e.g. BTC)")] = None,
    venue: Annotated[Path | None, typer.Option(
        help="With --database-url: the service's venue TOML (default: shipped)")] = None,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Stress-audit a book under every methodology (see docs/systemic.md).

    Standard scenarios (audit.toml) and the liquidation-proximity curve.
    """
    from pmargin.analytics.audit import load_audit_params, run_audit

    check_output_path(plot, "--plot", _image_types if plot is not None else None)
    sources = [x for x in (book, generate, database_url) if x is not None]
    if len(sources) != 1:
        raise InvalidInput("BOOK", str(book) if book else None,
                           "give exactly one of a BOOK file, --generate N or --database-url")
    params = load_audit_params(scenarios) if scenarios is not None else None
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if models is not None and not names:
        raise InvalidInput("--models", models, "must name at least one model")
    if database_url is not None:
        bk, mkt = _service_book(database_url, service_book, venue)
    else:
        mkt = _market_or_demo(market)
        if generate is not None:
            from pmargin.analytics.books import generated_book

            bk = generated_book(mkt, generate, seed)
        else:
            from pmargin.analytics.books import load_book

            assert book is not None
            bk = _load(load_book, book, "BOOK")
    report = run_audit(bk, mkt, names, params, fund)
    data = report.to_dict()
    written = None
    if plot is not None:
        from pmargin.reports.systemic import audit_figure, save_figure

        written = save_figure(audit_figure(data), plot)
    if as_json:
        _emit_json(data)
        return
    from pmargin.reports.systemic import print_audit

    print_audit(console, data)
    if written is not None:
        console.print(f"plot written to {written}", highlight=False)


@app.command("replay-crash")
def replay_crash(
    episode: Annotated[str, typer.Argument(
        help="Episode of crash_replay.toml (covid-2020, may-2021, june-2022, ftx-2022) or 'all'")],
    book: Annotated[Path | None, typer.Option(
        "--book", help="Book JSON to replay (coin-margined in the asset; default: generated)",
        exists=True, dir_okay=False, readable=True)] = None,
    asset: Annotated[str | None, typer.Option(
        help="BTC or ETH (default: both; a --book sets it to its margin currency)")] = None,
    accounts: Annotated[int | None, typer.Option(
        help="Accounts of the generated book (default: crash_replay.toml)", min=1)] = None,
    regimes: Annotated[str | None, typer.Option(
        help=f"Comma-separated models (default: crash_replay.toml); {MODELS_HELP}")] = None,
    loss_mode: Annotated[Literal["adl", "socialise"], typer.Option(
        help="Who covers a deficit once the insurance fund is empty")] = "adl",
    jobs: Annotated[int, typer.Option(
        help="Worker processes over episode x asset x regime (same results as 1)", min=1)] = 1,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Replay a crash hour by hour under each margin regime (docs/systemic.md)."""
    from pmargin.analytics.crash_replay import load_replay_params, replay_all
    from pmargin.liquidation.cascade import load_cascade_params

    check_output_path(plot, "--plot", _image_types if plot is not None else None)
    p = load_replay_params()
    eps = list(p.episodes) if episode == "all" else [p.episode(episode)]
    bk = None
    if book is not None:
        from pmargin.analytics.books import load_book

        bk = _load(load_book, book, "--book")
        if asset is not None and asset.upper() != bk.margin_currency.upper():
            raise InvalidInput("--asset", asset, f"the book is margined in {bk.margin_currency}")
        assets = [bk.margin_currency.upper()]
    elif asset is not None:
        if asset.upper() not in ("BTC", "ETH"):
            raise InvalidInput("--asset", asset, "must be BTC or ETH")
        assets = [asset.upper()]
    else:
        assets = ["BTC", "ETH"]
    names = [m.strip() for m in regimes.split(",") if m.strip()] if regimes else None
    if regimes is not None and not names:
        raise InvalidInput("--regimes", regimes, "must name at least one model")
    cascade = load_cascade_params().model_copy(update={"loss_mode": loss_mode})
    rows = [o.to_dict() for o in replay_all(eps, assets, p, names, accounts, bk, cascade, jobs)]
    written = None
    if plot is not None:
        from pmargin.reports.systemic import save_figure, tradeoff_figure

        written = save_figure(tradeoff_figure(rows), plot)
    if as_json:
        _emit_json({"replays": rows})
        return
    from pmargin.reports.systemic import print_replays

    print_replays(console, rows)
    if written is not None:
        console.print(f"plot written to {written}", highlight=False)


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")],
    accounts: Annotated[int, typer.Option(help="Accounts of the generated book", min=1)] = 2000,
    replay_accounts: Annotated[int, typer.Option(help="Accounts of each replayed book", min=1)]
    = 1000,
    episodes: Annotated[str, typer.Option(
        help="Comma-separated crash episodes ('none' for no replay)")]
    = "covid-2020,may-2021,june-2022,ftx-2022",
    assets: Annotated[str, typer.Option(help="Assets replayed")] = "BTC,ETH",
    models: Annotated[str, typer.Option(help=f"Methodologies compared; {MODELS_HELP}")]
    = "deribit-sm-isolated,deribit-sm,deribit-pm,okx-pm,span,pmargin",
    regimes: Annotated[str | None, typer.Option(
        help="Regimes of the replays (default: crash_replay.toml)")] = None,
    bates: Annotated[bool, typer.Option(help="Also calibrate Bates (slower)")] = True,
    paths: Annotated[int | None, typer.Option(help="Simulated paths (default stochvol.toml)",
                                              min=100)] = None,
) -> None:
    """Write one self-contained HTML page: efficiency, audit, stochastic-vol stress, replays."""
    from pmargin.reports.html import ReportOptions, collect_report, render_html

    check_output_path(out, "--out", lambda: ["html", "htm"])

    def names(text: str, option: str) -> tuple[str, ...]:
        got = tuple(x.strip() for x in text.split(",") if x.strip())
        if not got:
            raise InvalidInput(option, text, "must name at least one item")
        return got

    eps = () if episodes.strip().lower() == "none" else names(episodes, "--episodes")
    opts = ReportOptions(accounts, names(models, "--models"), replay_accounts, eps,
                         tuple(a.upper() for a in names(assets, "--assets")),
                         names(regimes, "--regimes") if regimes else (), bates, paths)
    out.write_text(render_html(collect_report(opts)), encoding="utf-8")
    console.print(f"report written to {out}", highlight=False)


def _market_or_demo(market: Path | None) -> Any:
    if market is not None:
        from pmargin.market.loaders import load_market

        return _load(load_market, market, "--market")
    from pmargin.demo import demo_market

    return demo_market()[0]


def _service_book(url: str, book_id: str | None, venue: Path | None) -> tuple[Any, Any]:
    """The held book and market of a service database, rebuilt by replaying its event log."""
    import sqlalchemy as sa

    from pmargin.service.app import Service
    from pmargin.service.config import load_venue
    from pmargin.service.database import connect
    from pmargin.service.store import Store

    if book_id is None:
        raise InvalidInput("--service-book", None, "is required with --database-url")
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise InvalidInput("--database-url", url, "no database there")
    svc = Service(load_venue(venue), Store(connect(url)))
    if book_id not in svc.state.books:
        raise InvalidInput("--service-book", book_id,
                           f"not a book of this service ({', '.join(sorted(svc.state.books))})")
    if svc.state.market is None:
        raise InvalidInput("--database-url", url, "the service has no market yet")
    return svc.state.held_book(book_id), svc.state.market


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    """Warnings on the command line are one line, like errors (no source line)."""
    return f"warning: {_one_line(str(message))}\n"


def main() -> None:
    """Entry point of the ``pmargin`` console script."""
    import warnings

    warnings.formatwarning = _one_line_warning
    app()


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
    books: Annotated[str | None, typer.Option(
        envvar="PMARGIN_BOOKS",
        help="Comma-separated books this instance serves (default all; sharding)")] = None,
    peer: Annotated[list[str] | None, typer.Option(
        help="BOOK=URL of the instance serving another book (hint in 421 answers)")] = None,
    attest_key: Annotated[Path | None, typer.Option(
        help="Attestation signing key (default PMARGIN_ATTEST_KEY, else the venue's "
             "[attest] key_path); generated on first start")] = None,
) -> None:
    """Run the margin service (HTTP API; docs at /docs)."""
    from pmargin.service.server import run

    run(host, port, database_url, venue, demo, books, peer, attest_key)


@app.command()
def replay(
    url: Annotated[str, typer.Option(help="Base URL of a running service")],
    key: Annotated[str, typer.Option(envvar="PMARGIN_KEY",
                                     help="Operator API key (or PMARGIN_KEY)")],
    asset: Annotated[str, typer.Option(help="BTC or ETH")] = "BTC",
    start: Annotated[str, typer.Option("--from", help="First hour: a date or ISO time (UTC)")]
    = "2025-01-01",
    end: Annotated[str, typer.Option("--to", help="Last hour (a bare date: its last hour)")]
    = "2025-12-31",
    speed: Annotated[str, typer.Option(
        help="Seconds of history per second (3600: an hour a second), or max")] = "max",
    step_hours: Annotated[int, typer.Option(min=1, max=24 * 31, help="Hours between updates")]
    = 1,
    instruments: Annotated[Path | None, typer.Option(
        help="Instruments listed in every market besides the standard ones (one name a line: "
        "those the service's accounts hold)", exists=True, dir_okay=False, readable=True)]
    = None,
    source: Annotated[str | None, typer.Option(
        help="Source id of the updates (default replay:<ASSET>-history)")] = None,
    workers: Annotated[int, typer.Option(min=0, max=8, help="Processes building the markets "
                                         "ahead of the sender (0: none)")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Play history (hourly index, DVOL, Deribit smile) into a running service."""
    from datetime import timedelta

    from pmargin.feeds.replay import (
        ReplayFeed,
        history_builder,
        parse_speed,
        parse_when,
        replay_into,
        replay_times,
    )

    pace = parse_speed(speed)
    times = replay_times(parse_when(start, "--from"), parse_when(end, "--to", end_of_day=True),
                         timedelta(hours=step_hours))
    names = ([ln.strip() for ln in instruments.read_text().splitlines() if ln.strip()]
             if instruments is not None else [])
    feed = ReplayFeed(times, history_builder(asset, names),
                      source or f"replay:{asset.strip().upper()}-history", workers=workers)
    if not as_json:
        typer.echo(f"replaying {len(times):,} {asset.upper()} markets {times[0]:%Y-%m-%d %H:%M}"
                   f" -> {times[-1]:%Y-%m-%d %H:%M} UTC into {url} at "
                   f"{'max speed' if pace is None else f'{pace:g}x'}", err=True)
    out = replay_into(feed, url, key, pace).summary()
    if as_json:
        _emit_json(out)
        return
    typer.echo(f"sent {out['sent']:,}: accepted {out['accepted']:,}, held {out['held']:,}, "
               f"refused {out['refused']:,} in {out['wall_s']:.1f} s "
               f"({out['accepted_per_s'] or 0:.1f} accepted/s); epoch latency p50 "
               f"{out['latency_p50_ms']} ms, p99 {out['latency_p99_ms']} ms")
    for r in out["refusals"]:
        typer.echo(f"  {r['time']}: HTTP {r['status']} {str(r['body'])[:200]}")


@keys_app.command("create")
def keys_create(
    role: Annotated[Literal["trader", "operator", "risk", "admin"], typer.Option(
        help="trader | operator | risk | admin")],
    account: Annotated[str | None, typer.Option(help="Account of a trader key")] = None,
    database_url: Annotated[str | None, typer.Option(help="Database URL")] = None,
) -> None:
    """Create an API key (printed once; only its hash is stored)."""
    from pmargin.service.server import create_key

    typer.echo(create_key(role, account, database_url))


def _read_json(path: Path, option: str) -> Any:
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(option, str(path), "no such file") from None
    except IsADirectoryError:
        raise InvalidInput(option, str(path), "is a directory, not a JSON file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(option, str(path), f"is not JSON ({exc})") from None


@app.command()
def verify(
    attestation: Annotated[Path, typer.Argument(help="Attestation JSON (GET "
                                                "/v1/attestations/{epoch})")],
    proof: Annotated[Path | None, typer.Option(help="Inclusion proof JSON (GET "
                                               "/v1/accounts/{id}/proof)")] = None,
    recompute: Annotated[bool, typer.Option(
        "--recompute", help="Re-run the engine on --inputs and compare the root")] = False,
    inputs: Annotated[Path | None, typer.Option(
        help="Inputs JSON (GET /v1/attestations/{epoch}/inputs), or a folder holding "
             "inputs.json")] = None,
    public_key: Annotated[Path | None, typer.Option(
        help="The venue's public key: 64 hex digits, PEM, or the JSON of GET "
             "/v1/attestations/public-key (default: the key in the document, which proves "
             "integrity only)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an attestation: signature, inclusion of a leaf, and (--recompute) the root.

    Exit status 0 when every check passes, 1 when one fails (named), 2 on bad input.
    """
    from pmargin.attest.signing import read_public_key
    from pmargin.attest.verify import Report, check_attestation, check_proof, check_recompute

    doc = _read_json(attestation, "ATTESTATION")
    if not isinstance(doc, dict):
        raise InvalidInput("ATTESTATION", str(attestation), "must hold a JSON object")
    if recompute and inputs is None:
        raise InvalidInput("--inputs", None, "--recompute needs the exported inputs")
    pub = None
    if public_key is not None:
        try:
            text = public_key.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput("--public-key", str(public_key), "no such file") from None
        pub = read_public_key(text, "--public-key")
    report = Report()
    check_attestation(doc, pub, report)
    if proof is not None:
        pf = _read_json(proof, "--proof")
        if not isinstance(pf, dict):
            raise InvalidInput("--proof", str(proof), "must hold a JSON object")
        check_proof(doc, pf, report)
    if recompute:
        assert inputs is not None
        path = inputs / "inputs.json" if inputs.is_dir() else inputs
        data = _read_json(path, "--inputs")
        if not isinstance(data, dict):
            raise InvalidInput("--inputs", str(path), "must hold a JSON object")
        check_recompute(doc, data, report)
    if as_json:
        _emit_json(report.to_dict())
    else:
        for c in report.checks:
            typer.echo(f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        failed = [c.name for c in report.checks if not c.passed]
        typer.echo("valid" if report.valid else f"INVALID: {', '.join(failed)} failed")
    if not report.valid:
        raise typer.Exit(1)


if __name__ == "__main__":
    main()
