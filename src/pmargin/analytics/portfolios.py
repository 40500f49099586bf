"""The standard portfolios of the backtest (issue 12.2), built on a day's standard instruments.

Every portfolio holds one contract (one coin of underlying) per option leg, of the day's
constant-tenor instruments (:func:`pmargin.analytics.history.standard_instruments` labels):

=========================  ===================================================================
``short_put``              short 30-day 25-delta put
``short_call``             short 30-day 25-delta call
``short_strangle``         short 30-day 25-delta put and call
``short_straddle_hedged``  short 30-day ATM call and put, delta-hedged with the perpetual
                           (the hedge is set each day; it is not rebalanced during the margin
                           period of risk)
``call_spread``            bear call credit spread: short 30-day 25-delta call, long 10-delta call
``put_spread``             bull put credit spread: short 30-day 25-delta put, long 10-delta put
``covered_call``           short 30-day 25-delta call, holding one coin (coin collateral)
``calendar``               short 7-day ATM call, long 30-day ATM call
``risk_reversal``          long 30-day 25-delta call, short 30-day 25-delta put
``market_maker``           one market-maker account of :func:`pmargin.synthetic.generate_book`
                           over the day's instruments (hundreds of lots, delta-hedged)
=========================  ===================================================================

Deltas are the library's coin deltas (:meth:`InstrumentTable.coin_delta`). Accounts hold
``collateral_usd`` of the margin currency (plus the coin of the covered call); collateral does
not enter the margin of these models, nor the realised loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.instruments import Instrument
from pmargin.market import MarketSnapshot
from pmargin.models.valuation import build_table
from pmargin.portfolio import Portfolio, Position
from pmargin.synthetic import Archetypes, generate_book

__all__ = ["PORTFOLIOS", "build_portfolios"]

Legs = list[tuple[str, float]]

_FIXED: dict[str, Legs] = {
    "short_put": [("30d-P-d25", -1.0)],
    "short_call": [("30d-C-d25", -1.0)],
    "short_strangle": [("30d-P-d25", -1.0), ("30d-C-d25", -1.0)],
    "short_straddle_hedged": [("30d-C-atm", -1.0), ("30d-P-atm", -1.0)],
    "call_spread": [("30d-C-d25", -1.0), ("30d-C-d10", 1.0)],
    "put_spread": [("30d-P-d25", -1.0), ("30d-P-d10", 1.0)],
    "covered_call": [("30d-C-d25", -1.0)],
    "calendar": [("7d-C-atm", -1.0), ("30d-C-atm", 1.0)],
    "risk_reversal": [("30d-C-d25", 1.0), ("30d-P-d25", -1.0)],
}

PORTFOLIOS: tuple[str, ...] = (*_FIXED, "market_maker")
"""Names of the standard portfolios, in report order."""

_MM_ARCHETYPES = Archetypes(market_maker=1.0, spread_trader=0.0, naked_seller=0.0,
                            covered_call=0.0, directional=0.0, collateral_only=0.0, empty=0.0)


def _hedge(legs: Sequence[tuple[Instrument, float]], perp: Instrument, market: MarketSnapshot,
           margin_currency: str) -> Position:
    insts = [i for i, _ in legs]
    delta = build_table(insts, market, margin_currency).coin_delta()
    net = float(sum(q * d for (_, q), d in zip(legs, delta, strict=True)))
    return Position(perp, round(-net, 6))


def build_portfolios(
    std: Mapping[str, Instrument],
    market: MarketSnapshot,
    margin_currency: str,
    names: Sequence[str] = PORTFOLIOS,
    collateral_usd: float = 100_000.0,
    seed: int = 0,
) -> list[Portfolio]:
    """The standard portfolios of one day.

    Parameters
    ----------
    std : mapping of str to Instrument
        The day's standard instruments by label (``standard_instruments``).
    market : MarketSnapshot
        The day's market (lists ``std``).
    margin_currency : str
        ``"USDC"`` for linear instruments, the coin for inverse ones.
    names : sequence of str, optional
        Portfolios to build (default all of :data:`PORTFOLIOS`), in that order.
    collateral_usd : float, optional
        Collateral of each account, in USD worth of the margin currency.
    seed : int, optional
        Seed of the market-maker account (the same every day, so its shape is stable).

    Returns
    -------
    list of Portfolio
        One account per name (``account_id`` = the name).

    Raises
    ------
    InvalidInput
        For an unknown portfolio name (field ``portfolios``) or missing labels in ``std``.
    """
    perp = std["PERP"]
    underlying = perp.underlying
    price = market.collateral_price(margin_currency)
    coll = {margin_currency: collateral_usd / price}
    out: list[Portfolio] = []
    for name in names:
        if name == "market_maker":
            out.append(_market_maker(std, market, margin_currency, coll, seed))
            continue
        legs_spec = _FIXED.get(name)
        if legs_spec is None:
            raise InvalidInput("portfolios", name,
                               f"unknown portfolio (known: {', '.join(PORTFOLIOS)})")
        try:
            legs = [(std[label], q) for label, q in legs_spec]
        except KeyError as exc:
            raise InvalidInput("portfolios", name,
                               f"needs the standard instrument {exc.args[0]}") from exc
        positions = [Position(i, q) for i, q in legs]
        c = dict(coll)
        if name == "short_straddle_hedged":
            positions.append(_hedge(legs, perp, market, margin_currency))
        if name == "covered_call":
            c[underlying] = c.get(underlying, 0.0) + 1.0
        out.append(Portfolio(margin_currency, tuple(positions), c, account_id=name))
    return out


def _market_maker(std: Mapping[str, Instrument], market: MarketSnapshot, margin_currency: str,
                  coll: Mapping[str, float], seed: int) -> Portfolio:
    universe = list(dict.fromkeys(std.values()))
    book: Book = generate_book(market, universe, 1, seed=seed, margin_currency=margin_currency,
                               archetypes=_MM_ARCHETYPES)
    row = book.positions.getrow(0)
    positions = tuple(Position(book.instruments[j], float(q))
                      for j, q in zip(row.indices, row.data, strict=True))
    return Portfolio(margin_currency, positions, dict(coll), account_id="market_maker")

