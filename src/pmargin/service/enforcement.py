"""Automatic enforcement: health events, liquidation as logged steps, the circuit breaker.

The service calls :meth:`Enforcer.observe` for every event applied (live or replayed) and
:meth:`Enforcer.after_write` after every write accepted from outside. After a re-margin the
enforcer logs the health transitions (:mod:`pmargin.service.health_events`), checks the book's
circuit breaker and wakes its worker thread, which liquidates the accounts below maintenance
margin one logged step at a time:

``start``
    the plan of the configured method, no money moves: ``market``, the surgical planner
    (:func:`pmargin.liquidation.planner.plan_liquidation` with the book's model on the market in
    use); ``takeover``, the smallest slice of the whole account that the book's liquidator
    account takes over to restore health (:func:`pmargin.liquidation.execution.
    takeover_fraction`, ``auction.toml`` ``[takeover]``);
``trade`` (method ``market``, one per planned step)
    the step's trades booked at the plan's execution prices against ``clearing:<book>``, the
    penalty (capped at the account's equity) to ``insurance_fund:<book>``;
``takeover`` (method ``takeover``)
    the slice of every position moves to the liquidator account ``<liquidator_account>-<book>``
    at the mark (both sides booked as fills against ``clearing:<book>``), the account pays the
    liquidator the discount ``discount x |slice value|`` and the insurance fund the penalty
    ``insurance_fee_rate x |slice value|`` (capped at the account's equity after the discount);
``fund``
    a negative margin-currency balance left once every position is closed is paid by the
    insurance fund, up to its balance;
``adl`` or ``socialised``
    what the fund could not pay is taken from other accounts' profits (equity minus net
    deposits, at most their cash and their equity above MM): in the BitMEX ranking of whole
    accounts (``adl``) or pro rata (``socialised``); what nobody can pay stays on the account
    as bad debt and is reported;
``end``
    the outcome and the account's health afterwards.

Every step is one event whose payload carries its ledger postings and position changes, written
in one transaction with them (the idempotency key ``system/liq/<id>/<step>`` is unique in the
log, so no step can be written twice); replay applies the payload and never re-plans. The next
step of a liquidation is a function of its logged steps and of the state, so after a crash the
worker continues with exactly the step that was not logged.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from pmargin.errors import ParamsError
from pmargin.instruments import parse_instrument
from pmargin.liquidation.health import HEALTH_NAMES, classify
from pmargin.service.health_events import HealthTracker
from pmargin.service.money import from_units, to_units
from pmargin.service.positions import fill_effect
from pmargin.service.state import Effect, clearing, external, user

if TYPE_CHECKING:
    from pmargin.service.app import Service

__all__ = ["LOGGED_KINDS", "Enforcer", "Liquidation", "insurance_fund"]

LOGGED_KINDS = ("health", "liquidation", "breaker", "fund")
"""Event kinds written by the enforcer (the service replays them through :meth:`effect_of`)."""

SYSTEM_KEY = "system"
"""Key-id part of the idempotency keys of events the service writes itself."""


def insurance_fund(book: str) -> str:
    """Ledger account of a book's insurance fund."""
    return f"insurance_fund:{book}"


@dataclass
class Liquidation:
    """One liquidation of one account: its plan and the steps logged so far."""

    id: str
    account: str
    book: str
    method: str
    market_digest: str | None
    plan: list[dict[str, Any]]
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    outcome: str | None = None

    def actions(self) -> list[str]:
        """Actions logged so far, in order."""
        return [str(s["action"]) for s in self.steps]

    def view(self) -> dict[str, Any]:
        """JSON view for the account endpoint and the stream."""
        return {"id": self.id, "method": self.method, "state": "done" if self.done else
                "in_progress", "outcome": self.outcome, "market_digest": self.market_digest,
                "planned_trade_steps": len(self.plan), "steps": self.steps}


class Enforcer:
    """Health events, liquidations and circuit breakers of a :class:`Service`."""

    def __init__(self, service: Service) -> None:
        self.svc = service
        self.cfg = service.cfg.enforcement
        if self.cfg.method == "auction":
            raise ParamsError("enforcement.method", self.cfg.method,
                              "a Dutch auction needs bidders who bid over time; the service has "
                              "no bidding interface yet: use 'market' or 'takeover'")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything derived from the log (before a replay)."""
        self.health = HealthTracker()
        self.liquidations: dict[str, Liquidation] = {}
        self.by_account: dict[str, list[str]] = defaultdict(list)
        self.open: dict[str, str] = {}  # book -> id of the liquidation in progress
        self.breaker: dict[str, dict[str, Any]] = {}
        self.net_deposits: dict[str, int] = defaultdict(int)  # margin-currency units
        self.seeded: set[str] = set()
        self.epoch: int | None = None

    # ------------------------------------------------------------------ the log
    def effect_of(self, kind: str, book: str, p: dict[str, Any]) -> Effect:
        """The effect of a logged enforcer event: exactly the postings and positions logged."""
        return Effect(kind, book,
                      postings=[(str(a), str(c), int(u)) for a, c, u in p.get("postings", [])],
                      positions={(str(a), str(i)): (int(u), Decimal(e))
                                 for a, i, u, e in p.get("positions", [])})

    def observe(self, kind: str, book: str, p: dict[str, Any], seq: int) -> None:
        """Record an applied event (live or replayed): the enforcer's view of the log."""
        if kind == "health":
            self.health.observe(p)
        elif kind == "breaker":
            self.breaker[book] = {**p, "seq": seq}
        elif kind == "fund":
            self.seeded.add(book)
        elif kind == "liquidation":
            step = {**p, "seq": seq}
            if p["action"] == "start":
                liq = Liquidation(p["liquidation"], p["account"], book, p["method"],
                                  p.get("market_digest"), list(p["plan"]))
                self.liquidations[liq.id] = liq
                self.by_account[liq.account].append(liq.id)
                self.open[book] = liq.id
            liq = self.liquidations[p["liquidation"]]
            liq.steps.append({k: v for k, v in step.items() if k != "plan"})
            if p["action"] == "end":
                liq.done, liq.outcome = True, str(p["outcome"])
                self.open.pop(book, None)
        elif kind in ("deposit", "withdrawal"):
            bs = self.svc.state.books[book]
            if p["currency"] == bs.cfg.margin_currency:
                u = to_units(Decimal(p["amount"]), self.svc.cfg.quantum(p["currency"]), "amount")
                self.net_deposits[p["account"]] += u if kind == "deposit" else -u

    # ------------------------------------------------------------------ after a write
    def after_write(self, kind: str, eff: Effect, seq: int) -> None:
        """After an accepted outside write (under the write lock): health events, breaker, wake.

        Parameters
        ----------
        kind : str
            Event kind written.
        eff : Effect
            Its effect (already applied).
        seq : int
            Its sequence number.
        """
        s = self.svc.state
        if s.market is None:
            return
        if kind == "market":
            for bid, bs in s.books.items():
                if bs.accounts:
                    self._health_events(bid, None, seq)
                    self._check_breaker(bid, seq)
        else:
            touched = {a for (a, _) in eff.positions}
            touched |= {a[5:] for a, _, _ in eff.postings if a.startswith("acct:")}
            if eff.new_account is None and touched:
                self._health_events(eff.book, sorted(touched), seq)
        if kind != "market":  # a market is streamed by the write itself, once applied
            self.svc.publish(kind, eff, seq)
        self._wake.set()

    def _health_events(self, book: str, accounts: list[str] | None, cause: int) -> None:
        items = self._health_items(book, accounts, cause)
        if items:
            self.svc.write_system(items)

    def _health_items(self, book: str, accounts: list[str] | None, cause: int
                      ) -> list[tuple[str, str, dict[str, Any], Effect, str]]:
        s = self.svc.state
        eng = s.engine(book)
        res = eng.result
        if accounts is None:
            names = list(s.books[book].accounts)
            rows = np.arange(len(names))
        else:
            names = accounts
            rows = np.array([eng.row(a) for a in accounts], dtype=np.int64)
        pays = self.health.transitions(names, res.equity[rows], res.initial_margin[rows],
                                       res.maintenance_margin[rows], epoch=self.epoch,
                                       cause_seq=cause)
        return [("health", book, p, Effect("health", book),
                 f"{SYSTEM_KEY}/health/{cause}/{p['account']}") for p in pays]

    # ------------------------------------------------------------------ breaker
    def under_mm(self, book: str) -> tuple[int, int]:
        """(accounts below maintenance margin, accounts) of a book now."""
        s = self.svc.state
        bs = s.books[book]
        if not bs.accounts or s.market is None:
            return 0, len(bs.accounts)
        eng = s.engine(book)
        res = eng.result
        under = res.equity < res.maintenance_margin
        if self.liquidator(book) in s.account_book:  # the backstop is not counted
            under[eng.row(self.liquidator(book))] = False
        return int(under.sum()), len(bs.accounts)

    def breaker_state(self, book: str) -> str:
        """``armed``, ``tripped`` or ``reset`` (acknowledged by a risk key)."""
        return str(self.breaker.get(book, {}).get("state", "armed"))

    def _check_breaker(self, book: str, cause: int) -> None:
        n_under, n = self.under_mm(book)
        share = n_under / n if n else 0.0
        state = self.breaker_state(book)
        over = n_under >= self.cfg.breaker_min_accounts and share > self.cfg.breaker_share
        new = None
        if over and state == "armed":
            new = "tripped"
        elif not over and state in ("tripped", "reset"):
            new = "armed"
        if new is not None:
            p = {"book": book, "state": new, "share_under_mm": share, "under_mm": n_under,
                 "accounts": n, "threshold": self.cfg.breaker_share, "cause_seq": cause,
                 "alert": (f"{n_under} of {n} accounts ({share:.1%}) under maintenance margin "
                           f"at once (> {self.cfg.breaker_share:.0%}): automatic liquidation "
                           "stopped; a risk key resets it (POST /v1/books/{book}/breaker/reset)"
                           if new == "tripped" else "share under maintenance margin back "
                           "below the threshold: automatic liquidation resumes")}
            self.svc.write_system([("breaker", book, p, Effect("breaker", book),
                                    f"{SYSTEM_KEY}/breaker/{cause}/{new}")])

    def reset_breaker(self, book: str, key_id: str) -> dict[str, Any]:
        """A risk key acknowledges a tripped breaker: liquidation resumes (logged)."""
        from pmargin.errors import InvalidInput

        with self.svc.lock:
            if book not in self.svc.state.books:
                raise InvalidInput("book", book, "unknown book")
            if self.breaker_state(book) != "tripped":
                raise InvalidInput("book", book, f"breaker is {self.breaker_state(book)}, "
                                   "not tripped")
            n_under, n = self.under_mm(book)
            p = {"book": book, "state": "reset", "by": key_id, "under_mm": n_under,
                 "accounts": n, "share_under_mm": n_under / n if n else 0.0,
                 "alert": "reset by a risk key: automatic liquidation resumes"}
            seq = self.svc.write_system([("breaker", book, p, Effect("breaker", book),
                                          f"{SYSTEM_KEY}/breaker/{self.svc.state.seq}/reset")])
        self._wake.set()
        return {"book": book, "breaker": "reset", "seq": seq[0]}

    # ------------------------------------------------------------------ the worker
    def start(self) -> None:
        """Seed the insurance funds if new and start the worker (resumes open liquidations)."""
        import sqlalchemy as sa

        from pmargin.service import tables as T

        with self.svc.lock:
            with self.svc.store.engine.connect() as c:  # the epoch in use before a restart
                last = c.execute(sa.select(sa.func.max(T.margin_results.c.epoch))).scalar()
            self.epoch = None if last is None else int(last)
            if self.svc.state.market is not None:
                # a crash between an outside write and its health events (two transactions)
                # left transitions unlogged: log them now, caused by the last event
                for bid, bs in self.svc.state.books.items():
                    if bs.accounts:
                        self._health_events(bid, None, self.svc.state.seq)
                        self._check_breaker(bid, self.svc.state.seq)
            if self.cfg.method == "takeover":
                for bid in self.svc.state.books:
                    liq = self.liquidator(bid)
                    if liq not in self.svc.state.account_book:
                        self.svc.write_system([("account", bid, {"id": liq, "book": bid},
                                                self.svc.state.effect_account(liq, bid),
                                                f"{SYSTEM_KEY}/liquidator/{bid}")])
            for bid, bs in self.svc.state.books.items():
                seed = self.cfg.insurance_fund_seed
                if bid not in self.seeded and seed > 0:
                    ccy = bs.cfg.margin_currency
                    u = to_units(seed, self.svc.cfg.quantum(ccy), "insurance_fund_seed")
                    posts = [[insurance_fund(bid), ccy, u], [external(bid), ccy, -u]]
                    self.svc.write_system([("fund", bid, {"book": bid, "reason": "seed",
                                                          "postings": posts},
                                            self.effect_of("fund", bid, {"postings": posts}),
                                            f"{SYSTEM_KEY}/fund-seed/{bid}")])
        if not self.cfg.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pmargin-enforcer", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Stop the worker (between two steps)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            while not self._stop.is_set():
                try:
                    did = self.step_once()
                except Exception as exc:  # logged and retried on the next wake, never silent
                    self.errors = [*self.errors[-99:], f"{type(exc).__name__}: {exc}"]
                    did = False
                if not did:
                    break
                if self.cfg.step_delay_seconds:
                    self._stop.wait(self.cfg.step_delay_seconds)

    def queue_length(self, book: str | None = None) -> int:
        """Accounts below maintenance margin not yet done on this market (gauge hook)."""
        with self.svc.lock:
            books = [book] if book is not None else list(self.svc.state.books)
            return sum(len(self._candidates(b)) + (b in self.open) for b in books)

    def step_once(self) -> bool:
        """Log the next step of one liquidation; False when there is nothing to do."""
        with self.svc.lock:
            s = self.svc.state
            if s.market is None:
                return False
            for bid in s.books:
                if self.breaker_state(bid) == "tripped":
                    continue
                lid = self.open.get(bid)
                if lid is not None:
                    self._next_step(self.liquidations[lid])
                    return True
                cands = self._candidates(bid)
                if cands:
                    self._start(bid, cands[0])
                    return True
            return False

    def liquidator(self, book: str) -> str:
        """The account that takes over slices in ``book`` (method ``takeover``)."""
        return f"{self.cfg.liquidator_account}-{book}"

    def _candidates(self, book: str) -> list[str]:
        """Accounts below MM, largest shortfall first, not already finished on this market."""
        s = self.svc.state
        bs = s.books[book]
        if not bs.accounts or s.market is None:
            return []
        res = s.engine(book).result
        short = res.maintenance_margin - res.equity
        rows = np.flatnonzero(np.isfinite(short) & (short > 0))
        out = []
        for r in rows[np.argsort(-short[rows], kind="stable")]:
            a = bs.accounts[int(r)]
            if a == self.liquidator(book):
                continue  # the venue's own backstop: funded and watched by the operator
            ids = self.by_account.get(a)
            if ids:
                last = self.liquidations[ids[-1]]
                if last.market_digest == s.market_digest and last.outcome != "replan":
                    continue  # done on this market: again only after the market moves
            out.append(a)
        return out

    # ------------------------------------------------------------------ steps
    def _figures(self, book: str, account: str) -> dict[str, Any]:
        res = self.svc.state.engine(book).result
        r = self.svc.state.engine(book).row(account)
        eq, im, mm = (float(res.equity[r]), float(res.initial_margin[r]),
                      float(res.maintenance_margin[r]))
        return {"equity": eq, "initial_margin": im, "maintenance_margin": mm,
                "health": HEALTH_NAMES[int(classify(eq, im, mm))]}

    def _start(self, book: str, account: str) -> None:
        from pmargin.liquidation.planner import plan_liquidation

        s = self.svc.state
        bs = s.books[book]
        n = len(self.by_account.get(account, [])) + 1
        lid = f"{account}#{n}"
        pf, mkt = self.svc.portfolio(account), self.svc.market()
        p: dict[str, Any] = {"liquidation": lid, "account": account, "step": 0,
                             "action": "start", "method": self.cfg.method,
                             "market_digest": s.market_digest,
                             "trigger": self._figures(book, account),
                             "reason": "equity below maintenance margin"}
        if self.cfg.method == "takeover":
            from pmargin.liquidation.execution import takeover_fraction

            res = bs.model.margin(pf, mkt)
            value = float(res.by_position["value"].sum()) if len(res.by_position) else 0.0
            frac = takeover_fraction(pf, mkt, bs.model, value, res.equity)
            p.update(plan=[{"label": "takeover", "fraction": str(frac), "positions_value": value,
                            "liquidator": self.liquidator(book)}], planned_deficit=None,
                     stuck=False)
        else:
            plan = plan_liquidation(pf, mkt, bs.model)
            p.update(plan=[{"label": st.label, "trades": [[i, q, px] for i, q, px in st.trades],
                            "penalty": st.penalty, "equity_after": st.equity,
                            "maintenance_margin_after": st.maintenance_margin}
                           for st in plan.steps],
                     planned_deficit=plan.deficit, stuck=plan.stuck)
        self._log(book, lid, 0, p, Effect("liquidation", book))

    def _log(self, book: str, lid: str, k: int, p: dict[str, Any], eff: Effect) -> None:
        p["postings"] = [[a, c, u] for a, c, u in eff.postings]
        p["positions"] = [[a, i, u, str(e)] for (a, i), (u, e) in eff.positions.items()]
        touched = sorted({a for (a, _) in eff.positions} |
                         {a[5:] for a, _, _ in eff.postings if a.startswith("acct:")})
        # the step and the health transitions it causes: one transaction
        self.svc.write_system([("liquidation", book, p, eff, f"{SYSTEM_KEY}/liq/{lid}/{k}")],
                              follow=lambda seqs: self._health_items(book, touched, seqs[0])
                              if touched else [])
        cons = {c: u for c, u in self.svc.state.conservation().items() if u != 0}
        if cons:  # cannot happen with balanced effects: stop everything rather than go on
            self._stop.set()
            raise AssertionError(f"ledger does not conserve after {lid} step {k}: {cons}")

    def _next_step(self, liq: Liquidation) -> None:
        s = self.svc.state
        book, acct = liq.book, liq.account
        k = len(liq.steps)
        acts = liq.actions()
        base: dict[str, Any] = {"liquidation": liq.id, "account": acct, "step": k}
        if liq.method == "takeover" and "takeover" not in acts and "fund" not in acts:
            if s.market_digest != liq.market_digest:
                self._end(liq, k, "replan", "the market moved before the takeover: the account "
                          "is re-planned if still below MM")
                return
            st = liq.plan[0]
            eff, detail = self._takeover_effect(book, acct, Decimal(st["fraction"]),
                                                float(st["positions_value"]))
            self._log(book, liq.id, k, {**base, "action": "takeover", **detail}, eff)
            return
        n_trades = acts.count("trade")
        if liq.method != "takeover" and n_trades < len(liq.plan) and "fund" not in acts:
            if s.market_digest != liq.market_digest:
                self._end(liq, k, "replan", "the market moved: the rest of the plan is "
                          "dropped and the account re-planned if still below MM")
                return
            st = liq.plan[n_trades]
            eff, detail = self._trade_effect(book, acct, st)
            self._log(book, liq.id, k, {**base, "action": "trade", "label": st["label"],
                                        **detail}, eff)
            return
        bal = self._cash_units(book, acct)
        has_positions = bool(s.books[book].positions.get(acct))
        mc = s.books[book].cfg.margin_currency
        if bal < 0 and not has_positions and "fund" not in acts:
            fund = max(0, s.balances.get((insurance_fund(book), mc), 0))
            pay = min(-bal, fund)
            eff = Effect("liquidation", book, postings=[
                (insurance_fund(book), mc, -pay), (user(acct), mc, pay)] if pay else [])
            self._log(book, liq.id, k, {
                **base, "action": "fund", "deficit": str(from_units(-bal, self._q(mc))),
                "paid": str(from_units(pay, self._q(mc))),
                "fund_before": str(from_units(fund, self._q(mc))),
                "reason": "negative balance after every position was closed: the insurance "
                          "fund pays what it can"}, eff)
            return
        loss_act = self.cfg.loss_method
        if bal < 0 and not has_positions and loss_act not in acts:
            eff, detail = self._loss_effect(book, acct, -bal)
            self._log(book, liq.id, k, {**base, "action": loss_act, **detail}, eff)
            return
        outcome = ("bad_debt" if bal < 0 and not has_positions else
                   "closed" if not has_positions else
                   "restored" if self._figures(book, acct)["health"] in ("healthy",
                                                                         "margin_call")
                   else "stuck")
        self._end(liq, k, outcome, {
            "restored": "equity back at or above maintenance margin",
            "closed": "every position closed; the deficit, if any, was covered",
            "bad_debt": "a deficit nobody could cover is left on the account",
            "stuck": "still below maintenance margin after the plan; retried on the next "
                     "market"}[outcome])

    def _end(self, liq: Liquidation, k: int, outcome: str, why: str) -> None:
        p = {"liquidation": liq.id, "account": liq.account, "step": k, "action": "end",
             "outcome": outcome, "reason": why, "market_digest": self.svc.state.market_digest,
             "after": self._figures(liq.book, liq.account)}
        self._log(liq.book, liq.id, k, p, Effect("liquidation", liq.book))

    def _q(self, ccy: str) -> Decimal:
        return self.svc.cfg.quantum(ccy)

    def _cash_units(self, book: str, acct: str) -> int:
        mc = self.svc.state.books[book].cfg.margin_currency
        return int(self.svc.state.balances.get((user(acct), mc), 0))

    def _trade_effect(self, book: str, acct: str, st: dict[str, Any]
                      ) -> tuple[Effect, dict[str, Any]]:
        """One planned step: its trades at the plan's prices, the penalty to the fund."""
        s = self.svc.state
        bs = s.books[book]
        mkt = self.svc.market()
        qq = self.svc.cfg.money.quantity_quantum
        eff = Effect("liquidation", book)
        trades = []
        for name, q, px_usd in st["trades"]:
            inst = parse_instrument(name)
            held, entry = bs.positions.get(acct, {}).get(name, (0, Decimal(0)))
            dq = round(Decimal(repr(float(q))) / qq)
            if held and (dq < 0) != (held < 0) and (abs(dq) >= abs(held) or
                                                     abs(held + dq) <= abs(held) * 1e-6):
                dq = -held  # a close: exactly the position (never a flip by rounding)
            if dq == 0:
                continue
            price = _fill_price(inst, float(px_usd), mkt)
            settle = inst.settle_currency
            res = fill_effect(inst, from_units(held, qq), entry, from_units(dq, qq), price,
                              self._q(settle))
            cash = to_units(res.cash, self._q(settle), "cash")
            if cash:
                eff.postings += [(user(acct), settle, cash), (clearing(book), settle, -cash)]
            eff.positions[(acct, name)] = (to_units(res.quantity, qq, "quantity"), res.entry)
            trades.append({"instrument": name, "quantity": str(from_units(dq, qq)),
                           "price": str(price),
                           "price_currency": settle if inst.is_option else "USD",
                           "price_usd": float(px_usd), "cash": str(res.cash)})
        mc = bs.cfg.margin_currency
        eq_before = self._figures(book, acct)["equity"]
        pen = min(float(st["penalty"]), max(eq_before, 0.0))
        pen_units = int(Decimal(repr(pen)) / self._q(mc)) if pen > 0 else 0
        if pen_units > 0:
            eff.postings += [(user(acct), mc, -pen_units), (insurance_fund(book), mc, pen_units)]
        return eff, {"trades": trades, "penalty": str(from_units(pen_units, self._q(mc))),
                     "reason": "planned step of the surgical liquidation (planner.toml, "
                               "liquidity.toml prices)"}

    def _takeover_effect(self, book: str, acct: str, frac: Decimal, value: float
                         ) -> tuple[Effect, dict[str, Any]]:
        """The slice ``frac`` of every position to the liquidator at the mark, discount, penalty.

        Parameters
        ----------
        book, acct : str
            Book and liquidated account.
        frac : Decimal
            Fraction of each position taken over, in (0, 1] (1: exactly the positions held).
        value : float
            Signed mark value of the account's positions at the start, margin currency.
        """
        from pmargin.liquidation.auction_params import load_auction_params

        s = self.svc.state
        bs = s.books[book]
        mkt = self.svc.market()
        qq = self.svc.cfg.money.quantity_quantum
        liq = self.liquidator(book)
        eff = Effect("liquidation", book)
        moved = []
        for name, (held, entry) in sorted(bs.positions.get(acct, {}).items()):
            if frac >= 1:
                dq = held
            else:
                dq = int((Decimal(held) * frac).to_integral_value(rounding=ROUND_HALF_EVEN))
            if dq == 0:
                continue
            inst = parse_instrument(name)
            price = _fill_price(inst, float(mkt.mark_price(inst)), mkt)
            settle = inst.settle_currency
            q = self._q(settle)
            sold = fill_effect(inst, from_units(held, qq), entry, from_units(-dq, qq), price, q)
            lh, le = bs.positions.get(liq, {}).get(name, (0, Decimal(0)))
            bought = fill_effect(inst, from_units(lh, qq), le, from_units(dq, qq), price, q)
            c_a = to_units(sold.cash, q, "cash")
            c_l = to_units(bought.cash, q, "cash")
            eff.postings += [(user(acct), settle, c_a), (user(liq), settle, c_l),
                             (clearing(book), settle, -(c_a + c_l))]
            eff.positions[(acct, name)] = (to_units(sold.quantity, qq, "quantity"), sold.entry)
            eff.positions[(liq, name)] = (to_units(bought.quantity, qq, "quantity"),
                                          bought.entry)
            moved.append({"instrument": name, "quantity": str(from_units(dq, qq)),
                          "price": str(price),
                          "price_currency": settle if inst.is_option else "USD",
                          "cash_account": str(sold.cash), "cash_liquidator": str(bought.cash)})
        mc = bs.cfg.margin_currency
        qm = self._q(mc)
        tk = load_auction_params().takeover
        slice_abs = abs(Decimal(repr(value)) * frac)
        disc = int(tk.discount * slice_abs / qm)  # floored: never more than the rule
        eq_after = Decimal(repr(self._figures(book, acct)["equity"])) - disc * qm
        pen = min(int(tk.insurance_fee_rate * slice_abs / qm), max(int(eq_after / qm), 0))
        if disc:
            eff.postings += [(user(acct), mc, -disc), (user(liq), mc, disc)]
        if pen:
            eff.postings += [(user(acct), mc, -pen), (insurance_fund(book), mc, pen)]
        eff.postings = [x for x in eff.postings if x[2] != 0]
        return eff, {"fraction": str(frac), "liquidator": liq, "moved": moved,
                     "slice_value": str(Decimal(repr(value)) * frac),
                     "discount": str(from_units(disc, qm)), "penalty": str(from_units(pen, qm)),
                     "reason": "the liquidator account takes this slice of every position over at "
                               "the mark, for a discount (auction.toml [takeover])"}

    def _loss_effect(self, book: str, acct: str, deficit: int
                     ) -> tuple[Effect, dict[str, Any]]:
        """Take ``deficit`` units from other accounts' profits (ADL order or pro rata)."""
        from pmargin.liquidation.adl import adl_cash_shares, rank_accounts, socialised_loss_shares

        s = self.svc.state
        bs = s.books[book]
        mc = bs.cfg.margin_currency
        q = self._q(mc)
        res = s.engine(book).result
        qq = self.svc.cfg.money.quantity_quantum
        names, caps, eq, start, gross = [], [], [], [], []
        for r, a in enumerate(bs.accounts):
            if a in (acct, self.cfg.liquidator_account):
                continue
            e, m = float(res.equity[r]), float(res.maintenance_margin[r])
            if not (np.isfinite(e) and np.isfinite(m)) or e <= 0:
                continue
            eq_u = int(np.floor(e / float(q)))
            profit = eq_u - self.net_deposits.get(a, 0)
            room = int(np.floor((e - m) / float(q)))
            cap = min(profit, self._cash_units(book, a), room)
            if cap <= 0:
                continue
            names.append(a)
            caps.append(cap)
            eq.append(e)
            start.append(float(from_units(self.net_deposits.get(a, 0), q)))
            gross.append(sum(abs(float(from_units(u, qq)))
                             for u, _ in bs.positions.get(a, {}).values()))
        if self.cfg.loss_method == "adl" and names:
            ranking = rank_accounts(np.zeros(len(names)), np.array(eq), np.array(start),
                                    np.array(gross))
            taken, left = adl_cash_shares(Decimal(deficit), [Decimal(c) for c in caps],
                                          ranking.order())
            shares = {names[i]: int(v) for i, v in taken.items() if v > 0}
            unalloc = int(left)
        elif names:
            parts, left = socialised_loss_shares(Decimal(deficit), [Decimal(c) for c in caps],
                                                 Decimal(1))
            shares = {names[i]: int(v) for i, v in enumerate(parts) if v > 0}
            unalloc = int(left)
        else:
            shares, unalloc = {}, deficit
        eff = Effect("liquidation", book)
        for a, u in shares.items():
            eff.postings += [(user(a), mc, -u), (user(acct), mc, u)]
        return eff, {
            "deficit": str(from_units(deficit, q)),
            "taken": {a: str(from_units(u, q)) for a, u in shares.items()},
            "unallocated": str(from_units(unalloc, q)),
            "reason": ("the insurance fund could not cover the deficit: taken from profitable "
                       "accounts " + ("in ADL order (profit x leverage), each at most its "
                                      "profit, cash and equity above MM"
                                      if self.cfg.loss_method == "adl" else
                                      "pro rata to profit, each at most its profit, cash and "
                                      "equity above MM"))}

    # ------------------------------------------------------------------ views
    def account_section(self, account: str) -> dict[str, Any]:
        """The ``liquidation`` section of ``GET /v1/accounts/{id}``."""
        ids = self.by_account.get(account, [])
        cur = self.liquidations[ids[-1]] if ids else None
        state = ("none" if cur is None else "done" if cur.done else
                 "halted_by_breaker" if self.breaker_state(cur.book) == "tripped" else
                 "in_progress")
        return {"state": state, "health_logged": self.health.label(account),
                "current": cur.view() if cur is not None else None,
                "earlier": [self.liquidations[i].view() for i in ids[:-1]]}

    def book_section(self, book: str) -> dict[str, Any]:
        """Enforcement figures of a book for ``GET /v1/book`` and the stream."""
        s = self.svc.state
        mc = s.books[book].cfg.margin_currency
        lid = self.open.get(book)
        n_under, _n = self.under_mm(book)
        return {"breaker": {"state": self.breaker_state(book),
                            "last": self.breaker.get(book)},
                "insurance_fund": format(from_units(
                    s.balances.get((insurance_fund(book), mc), 0), self._q(mc)), "f"),
                "under_maintenance_margin": n_under,
                "liquidation_in_progress": lid,
                "worker_errors": len(self.errors), "last_worker_error": (
                    self.errors[-1] if self.errors else None),
                "liquidations_done": sum(1 for x in self.liquidations.values()
                                         if x.book == book and x.done)}


def _fill_price(inst: Any, px_usd: float, mkt: Any) -> Decimal:
    """A USD price as a fill price: coin per contract for inverse options, else USD (>= 0)."""
    if inst.is_option and inst.is_inverse:
        assert inst.expiry is not None
        px = px_usd / mkt.forward(inst.underlying, inst.expiry)
    else:
        px = px_usd
    return Decimal(repr(max(px, 0.0)))
