"""Command results as JSON-ready objects (one shape per command) and their terminal rendering.

Each ``*_json`` function returns the object a ``pmargin <command> --json`` prints; its JSON Schema
is ``docs/schemas/<command>.schema.json``. Values go through
:func:`pmargin.reports.jsonout.to_jsonable` (finite numbers, ``null`` for what does not exist,
exact decimals as strings).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pmargin.reports.jsonout import to_jsonable

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from pmargin.conformance.outcome import CaseOutcome
    from pmargin.liquidation.cascade import CascadeResult
    from pmargin.liquidation.execution import ExecutionOutcome
    from pmargin.liquidation.planner import LiquidationPlan
    from pmargin.models.result import AccountMargin

__all__ = [
    "conformance_json",
    "greeks_json",
    "hedges_json",
    "liquidate_json",
    "margin_json",
    "plan_json",
    "print_plan",
    "print_slices",
    "print_stress",
    "slices_json",
    "stress_json",
]


def margin_json(res: AccountMargin) -> dict[str, Any]:
    """``pmargin margin --json``: the result's summary with every key always present.

    ``worst_scenario`` and ``scenarios`` are ``null`` for models without scenarios;
    ``margin_ratio`` is ``null`` when equity is not positive, with ``margin_ratio_reason``.
    """
    out: dict[str, Any] = dict(res.to_dict())
    out.setdefault("worst_scenario", None)
    out.setdefault("scenarios", None)
    ratio = out.get("margin_ratio")
    out["margin_ratio_reason"] = None
    if isinstance(ratio, float) and not math.isfinite(ratio):
        out["margin_ratio"] = None
        out["margin_ratio_reason"] = "equity is not positive: the ratio is unbounded"
    return dict(to_jsonable(out))


def greeks_json(frame: pd.DataFrame, margin_currency: str) -> dict[str, Any]:
    """``pmargin greeks --json``: one record per position and the portfolio total."""
    positions = frame.drop(index="TOTAL").reset_index().to_dict(orient="records")
    total = frame.loc["TOTAL"].drop(labels=["quantity"]).to_dict()
    return dict(to_jsonable({"margin_currency": margin_currency, "positions": positions,
                             "total": total}))


def conformance_json(outcomes: Sequence[CaseOutcome]) -> dict[str, Any]:
    """``pmargin conformance run --json``: counts and one record per case."""
    cases = [dict(vars(o)) for o in outcomes]
    n_pass = sum(bool(o.passed) for o in outcomes)
    return dict(to_jsonable({"passed": n_pass, "failed": len(outcomes) - n_pass,
                             "cases": cases}))


def hedges_json(table: pd.DataFrame, market_label: str) -> dict[str, Any]:
    """``pmargin hedges --json``: the hedge matrix, one record per structure (IM in USD)."""
    rows = table.reset_index().to_dict(orient="records")
    return dict(to_jsonable({"market": market_label, "currency": "USD", "structures": rows}))


def plan_json(plan: LiquidationPlan) -> dict[str, Any]:
    """The surgical liquidation plan of ``pmargin liquidate`` (``--execution market``)."""
    return dict(to_jsonable({
        "account_id": plan.account_id, "model": plan.model,
        "margin_currency": plan.margin_currency, "needed": plan.needed,
        "healthy_after": plan.healthy, "stuck": plan.stuck,
        "before": {"equity": plan.before_equity, "initial_margin": plan.before_initial_margin,
                   "maintenance_margin": plan.before_maintenance_margin,
                   "target": plan.before_target},
        "steps": [{**vars(s), "trades": [{"instrument": n, "quantity": q, "price_usd": px}
                                         for n, q, px in s.trades]} for s in plan.steps],
        "total_penalty": plan.total_penalty, "total_slippage": plan.total_slippage,
        "liquidated_notional_usd": plan.liquidated_notional_usd,
        "positions_after": [{"instrument": p.instrument.name, "quantity": p.quantity}
                            for p in (plan.final.positions if plan.final else ())],
    }))


def slices_json(out: ExecutionOutcome) -> dict[str, Any]:
    """Takeover or Dutch auction of whole-account slices (``--execution takeover|auction``)."""
    auction = None
    if out.auction is not None:
        auction = {"fee": out.auction.fee, "insolvent": out.auction.insolvent,
                   "terminated": out.auction.terminated, "fills": list(out.auction.fills)}
    takeover = None
    if out.takeover is not None:
        takeover = {f.name: getattr(out.takeover, f.name)
                    for f in dataclasses.fields(out.takeover) if f.name != "transfers"}
    return dict(to_jsonable({
        "method": out.method, "account_id": out.account, "equity": out.equity,
        "positions_value": out.positions_value, "maintenance_margin": out.maintenance_margin,
        "fraction_sold": out.fraction_sold, "conservation_error": out.conservation_error,
        "auction": auction, "takeover": takeover,
    }))


def liquidate_json(execution: str, plan: dict[str, Any] | None,
                   slices: dict[str, Any] | None) -> dict[str, Any]:
    """``pmargin liquidate --json``: ``plan`` for market execution, ``slices`` otherwise."""
    return {"execution": execution, "plan": plan, "slices": slices}


def stress_json(cascades: Sequence[CascadeResult], accounts: int, shock: float, seed: int,
                loss_mode: str) -> dict[str, Any]:
    """``pmargin stress --json``: the run's inputs and one cascade per margin mode.

    ``accounts`` is the number of accounts asked for (the generated book); each cascade reports
    ``margined_accounts`` (the accounts it ran on) and ``isolated_sub_accounts`` (the
    sub-accounts isolated margin created by splitting those accounts; ``null`` in other modes).
    """
    out = []
    for c in cascades:
        d = dict(c.to_dict())
        margined = d.pop("accounts")
        d["accounts"] = accounts
        d["margined_accounts"] = margined
        d["isolated_sub_accounts"] = margined if c.label == "isolated" else None
        out.append(d)
    return dict(to_jsonable({"accounts": accounts, "shock": shock, "seed": seed,
                             "loss_mode": loss_mode, "cascades": out}))


def print_stress(console: Console, data: dict[str, Any]) -> None:
    """Print one table of rounds per cascade of :func:`stress_json`."""
    from rich.table import Table

    for r in data["cascades"]:
        who = f"{data['accounts']} accounts"
        if r["isolated_sub_accounts"] is not None:
            who += f" (split into {r['isolated_sub_accounts']} isolated sub-accounts)"
        final = "n/a" if r["final_index"] is None else f"{r['final_index']:,.0f}"
        t = Table(title=f"{r['label']} ({r['model']}): {who}, shock {data['shock']:+.0%}, "
                        f"final index {final}")
        for col in ("round", "index", "in liquidation", "stuck", "liquidated USD",
                    "bad debt USD", "fund used USD", "ADL USD", "socialised USD", "impact"):
            t.add_column(col, justify="right")
        for x in r["rounds"]:
            t.add_row(str(x["round"]), f"{x['index']:,.0f}", str(x["accounts_in_liquidation"]),
                      str(x["accounts_stuck"]), f"{x['liquidated_notional_usd']:,.0f}",
                      f"{x['bad_debt_usd']:,.0f}", f"{x['insurance_fund_used_usd']:,.0f}",
                      f"{x['adl_usd']:,.0f}", f"{x['socialised_usd']:,.0f}",
                      f"{x['price_impact']:+.4f}")
        console.print(t)
        console.print(f"conservation error: {r['conservation_error']}", highlight=False)


def print_plan(console: Console, plan: LiquidationPlan) -> None:
    """Print a surgical liquidation plan as a table."""
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


def print_slices(console: Console, data: dict[str, Any]) -> None:
    """Print the outcome of a takeover or Dutch auction (:func:`slices_json`) as text."""
    console.print(f"{data['method']} of account {data['account_id']}: equity {data['equity']:.8g}, "
                  f"positions value {data['positions_value']:.8g}, MM "
                  f"{data['maintenance_margin']:.8g}, fraction sold {data['fraction_sold']:.6g}, "
                  f"conservation error {data['conservation_error']}", highlight=False)
    if data["auction"] is not None:
        a = data["auction"]
        console.print(f"auction: fee {a['fee']}, insolvent {a['insolvent']}, terminated "
                      f"{a['terminated']}, {len(a['fills'])} fill(s)", highlight=False)
        for f in a["fills"]:
            console.print("  " + ", ".join(f"{k} {v}" for k, v in f.items()), highlight=False)
    if data["takeover"] is not None:
        console.print("takeover: " + ", ".join(f"{k} {v}" for k, v in data["takeover"].items()),
                      highlight=False)
