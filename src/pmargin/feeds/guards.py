"""Oracle safeguards: bad prices, jumps beyond a band, stale feeds.

Three guards stand between a feed and the margins (parameters: ``guards.toml``):

* :func:`check_prices` refuses NaN, infinite, zero, negative and crossed (bid above ask)
  prices, naming the field (the service answers 422, nothing changes);
* :class:`OracleGuard` holds an update whose index moved more than ``jump.band`` from the last
  accepted one, until a second source or a confirming update agrees (median of the sources
  where several exist);
* :meth:`OracleGuard.status` says whether the feed is stale (no accepted update for
  ``stale.after_seconds``); the service then refuses risk-increasing actions with
  :class:`FeedStale`.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pmargin.errors import InvalidInput, PmarginError
from pmargin.feeds.base import MarketUpdate
from pmargin.market import MarketSnapshot
from pmargin.paramfiles import Shipped, load_params_file

__all__ = ["Decision", "FeedStale", "FeedStatus", "GuardParams", "OracleGuard", "check_prices",
           "load_guard_params"]

_SHIPPED = Shipped("pmargin.feeds", "", "feed guards")
ENV = "PMARGIN_FEED_GUARDS"
"""Environment variable naming a guards TOML file that replaces the shipped one."""

MAX_HELD = 64
"""Held updates kept at most (the oldest are forgotten first)."""

_PRICE_FIELDS = ("mark_price", "bid_price", "ask_price", "underlying_price", "mark_iv")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StaleParams(_Strict):
    """When the feed is stale."""

    after_seconds: float = Field(gt=0, description="seconds without an accepted update")


class JumpParams(_Strict):
    """The jump band and its confirmation."""

    band: float = Field(gt=0, lt=1, description="relative move of the index that is held")
    confirm_band: float = Field(gt=0, lt=1, description="relative agreement of confirmations")
    min_sources: int = Field(ge=2, le=16, description="agreeing updates needed to apply a jump")
    hold_seconds: float = Field(gt=0, description="how long a held update can confirm")

    @model_validator(mode="after")
    def _confirm_within_band(self) -> JumpParams:
        if self.confirm_band > self.band:
            raise ValueError("confirm_band must not exceed band")
        return self


class GuardParams(_Strict):
    """Parameters of the oracle safeguards (``guards.toml``)."""

    schema_version: int = Field(ge=1, le=1)
    stale: StaleParams
    jump: JumpParams


def load_guard_params(path: str | Path | None = None) -> GuardParams:
    """Read the guard parameters.

    Parameters
    ----------
    path : str or Path, optional
        A guards TOML file; default: ``$PMARGIN_FEED_GUARDS`` if set, else the shipped
        ``guards.toml``.

    Returns
    -------
    GuardParams
        Validated, frozen.

    Raises
    ------
    ParamsError
        A missing or unreadable file, unknown or missing keys, invalid values.
    """
    chosen = path if path is not None else os.environ.get(ENV) or None
    if chosen is None:
        return load_params_file(GuardParams, "guards", _SHIPPED)
    return load_params_file(GuardParams, Path(chosen), _SHIPPED)


# ------------------------------------------------------------------ bad prices
def _bad(value: Any) -> str | None:
    """Why a price is unacceptable (None if it is a positive finite number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # types are the loader's to refuse (with its own message)
    x = float(value)
    if math.isnan(x):
        return "is NaN"
    if math.isinf(x):
        return "is infinite"
    if x == 0:
        return "is zero"
    if x < 0:
        return "is negative"
    return None


def check_prices(market: Mapping[str, Any] | MarketSnapshot | None) -> None:
    """Refuse a market with a NaN, infinite, zero, negative or crossed price.

    Parameters
    ----------
    market : mapping or MarketSnapshot
        A JSON market (a bare market block, or ``{"valuation_time", "market": block}``) before
        it is parsed, or a parsed snapshot (bid and ask of every instrument).

    Raises
    ------
    InvalidInput
        Naming the first bad field, e.g. ``market.index['BTC']`` (is NaN) or
        ``market.instruments['BTC-PERPETUAL'].bid_price`` (crossed: above the ask).
    """
    if isinstance(market, MarketSnapshot):
        for name in market.instrument_names:
            bid, ask = market.quote(name)
            if bid is not None and ask is not None and bid > ask:
                raise InvalidInput(f"market.instruments[{name!r}].bid_price", bid,
                                   f"crossed: the bid is above the ask {ask!r}")
        return
    if not isinstance(market, Mapping):
        return  # the loader refuses it, naming it
    block = market.get("market") if isinstance(market.get("market"), Mapping) else market
    assert isinstance(block, Mapping)
    for part in ("index", "collateral_prices"):
        prices = block.get(part)
        if isinstance(prices, Mapping):
            for ccy, px in prices.items():
                why = _bad(px)
                if why:
                    raise InvalidInput(f"market.{part}[{ccy!r}]", px, why)
    insts = block.get("instruments")
    if not isinstance(insts, Mapping):
        return
    for name, q in insts.items():
        if not isinstance(q, Mapping):
            continue
        for f in _PRICE_FIELDS:
            why = _bad(q.get(f))
            if why:
                raise InvalidInput(f"market.instruments[{name!r}].{f}", q.get(f), why)
        bid, ask = q.get("bid_price"), q.get("ask_price")
        if (isinstance(bid, int | float) and isinstance(ask, int | float)
                and not isinstance(bid, bool) and not isinstance(ask, bool) and bid > ask):
            raise InvalidInput(f"market.instruments[{name!r}].bid_price", bid,
                               f"crossed: the bid is above the ask {ask!r}")


# ------------------------------------------------------------------ status
@dataclass(frozen=True)
class FeedStatus:
    """How fresh the market in use is.

    Attributes
    ----------
    stale : bool
        No update accepted for more than ``after_seconds`` (or none at all).
    age_s : float or None
        Seconds since the last accepted update (server clock); None before the first.
    as_of : str or None
        Valuation time of the market in use (ISO-8601 UTC).
    accepted_at : str or None
        When the service accepted it (ISO-8601 UTC).
    stale_after_s : float
        The limit.
    source, digest : str or None
        Source id and digest of the market in use.
    """

    stale: bool
    age_s: float | None
    as_of: str | None
    accepted_at: str | None
    stale_after_s: float
    source: str | None
    digest: str | None

    def as_dict(self) -> dict[str, Any]:
        """The ``market`` block of the service's responses."""
        return {"stale": self.stale,
                "age_s": None if self.age_s is None else round(self.age_s, 3),
                "as_of": self.as_of, "accepted_at": self.accepted_at,
                "stale_after_s": self.stale_after_s, "source": self.source,
                "digest": self.digest}


class FeedStale(PmarginError):
    """A risk-increasing action refused because the market feed is stale (HTTP 503)."""

    def __init__(self, status: FeedStatus, action: str) -> None:
        since = status.accepted_at or "never"
        age = "no update accepted yet" if status.age_s is None else f"{status.age_s:.1f} s ago"
        super().__init__(
            f"the market feed is stale: no update accepted since {since} ({age}; limit "
            f"{status.stale_after_s:g} s); {action} is frozen until a market update is "
            "accepted (risk-reducing actions still pass)")
        self.status = status

    def body(self) -> dict[str, Any]:
        """Response body (also one result of a fill batch)."""
        return {"accepted": False, "error": "market_stale", "field": "market",
                "value": self.status.accepted_at, "reason": str(self),
                "market": self.status.as_dict()}


# ------------------------------------------------------------------ jump band
@dataclass(frozen=True)
class Decision:
    """What the guard decided about an update.

    Attributes
    ----------
    accept : bool
        Apply it (True) or hold it (False).
    reason : str
        Why (for a hold: the move, the band and what would release it).
    moves : dict of str to float
        Relative move of each underlying's index from the last accepted one.
    reference : dict of str to float
        The reference it was judged against (last accepted index, or the median of sources).
    """

    accept: bool
    reason: str
    moves: dict[str, float] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)

    def body(self, update: MarketUpdate) -> dict[str, Any]:
        """Response body of a held update (HTTP 202)."""
        return {"accepted": False, "held": True, "kind": "market", "reason": self.reason,
                "source": update.source, "digest": update.digest,
                "index": update.index(), "moves": self.moves, "reference": self.reference}


@dataclass
class _Held:
    source: str
    key: str | None
    index: dict[str, float]
    received: float


def _close(a: Mapping[str, float], b: Mapping[str, float], band: float) -> bool:
    """Every common underlying of ``a`` within ``band`` (relative) of ``b``."""
    return all(abs(a[u] / b[u] - 1.0) <= band for u in a if u in b)


class OracleGuard:
    """The jump band and the stale clock of one service.

    Parameters
    ----------
    params : GuardParams
        Thresholds.
    clock : callable, optional
        Seconds since the epoch (default :func:`time.time`; tests pass their own).
    """

    def __init__(self, params: GuardParams, clock: Callable[[], float] = time.time) -> None:
        self.params = params
        self.clock = clock
        self._index: dict[str, float] | None = None
        self._accepted_at: float | None = None
        self._as_of: datetime | None = None
        self._source: str | None = None
        self._digest: str | None = None
        self._held: list[_Held] = []

    # ---------------------------------------------------------------- state
    def restore(self, index: Mapping[str, float], accepted_at: datetime, as_of: datetime,
                source: str | None, digest: str | None) -> None:
        """Set the last accepted update (after a restart, from the event log)."""
        self._index = dict(index)
        self._accepted_at = accepted_at.timestamp()
        self._as_of = as_of
        self._source, self._digest = source, digest
        self._held.clear()

    def accepted(self, update: MarketUpdate) -> None:
        """Record an applied update: the new reference; held updates are dropped."""
        self._index = update.index()
        self._accepted_at = self.clock()
        self._as_of = update.time
        self._source, self._digest = update.source, update.digest
        self._held.clear()

    def status(self) -> FeedStatus:
        """Whether the market in use is stale, its age and what it is."""
        lim = self.params.stale.after_seconds
        if self._accepted_at is None:
            return FeedStatus(True, None, None, None, lim, None, None)
        age = max(self.clock() - self._accepted_at, 0.0)
        return FeedStatus(
            age > lim, age, None if self._as_of is None else _iso(self._as_of),
            _iso(datetime.fromtimestamp(self._accepted_at, UTC)), lim, self._source,
            self._digest)

    # ---------------------------------------------------------------- decide
    def decide(self, update: MarketUpdate, key: str | None = None) -> Decision:
        """Apply or hold ``update``; a held update is remembered (it may confirm a later one).

        Parameters
        ----------
        update : MarketUpdate
            The candidate.
        key : str, optional
            Its idempotency key: a retry of a held request (same key) is not a confirmation.

        Returns
        -------
        Decision
            ``accept`` False means: do not apply, answer 202 with ``reason``.
        """
        jp = self.params.jump
        idx = update.index()
        if self._index is None:
            return Decision(True, "first market")
        moves = {u: idx[u] / self._index[u] - 1.0 for u in idx if u in self._index}
        if all(abs(m) <= jp.band for m in moves.values()):
            return Decision(True, "within the band", moves, dict(self._index))
        now = self.clock()
        self._held = [h for h in self._held if now - h.received <= jp.hold_seconds]
        if key is not None and any(h.key == key for h in self._held):
            return Decision(False, "a retry of a held update is not a confirmation; "
                            + self._hold_reason(moves), moves, dict(self._index))
        cands = [*self._held, _Held(update.source, key, idx, now)]
        latest: dict[str, dict[str, float]] = {}
        for h in cands:
            latest[h.source] = h.index
        if len(latest) >= 2:  # several sources: judged against their median
            med = {u: statistics.median(p[u] for p in latest.values() if u in p) for u in idx}
            agree = sum(1 for p in latest.values() if _close(p, med, jp.confirm_band))
            if _close(idx, med, jp.confirm_band) and agree >= jp.min_sources:
                return Decision(True, f"confirmed: {agree} of {len(latest)} sources within "
                                f"{jp.confirm_band:.2%} of their median", moves, med)
        else:  # one source: earlier held updates of it that this one confirms
            same = [h for h in self._held if h.source == update.source
                    and _close(idx, h.index, jp.confirm_band)]
            if 1 + len(same) >= jp.min_sources:
                return Decision(True, f"confirmed by {len(same)} earlier held update(s) of "
                                f"{update.source} within {jp.confirm_band:.2%}", moves,
                                same[-1].index)
        self._held = [*self._held[-(MAX_HELD - 1):], cands[-1]]  # bounded memory
        return Decision(False, self._hold_reason(moves), moves, dict(self._index))

    def _hold_reason(self, moves: Mapping[str, float]) -> str:
        jp = self.params.jump
        worst = max(moves, key=lambda u: abs(moves[u]))
        return (f"held, not applied: the {worst} index moved {moves[worst]:+.2%} from the last "
                f"accepted {self._index[worst] if self._index else float('nan'):.2f}, beyond "
                f"the band of {jp.band:.0%}; it is applied once a second source or a later "
                f"update agrees within {jp.confirm_band:.0%} (within {jp.hold_seconds:g} s)")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
