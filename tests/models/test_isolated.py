"""Isolated margin as its own model (issue 9.1).

Fails on main: ``load_model("deribit-sm-isolated")`` did not exist and ``compute()`` of a book
under ``mode="isolated"`` gave the cross numbers, so a position whose own collateral was short of
its MM was classified healthy whenever the account as a whole covered it.
"""

from __future__ import annotations

import numpy as np
import pytest

from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.models import list_models, load_model
from pmargin.portfolio import portfolio_from_dict
from tests.factories import expiry_code, make_market, pf

E30 = expiry_code(30)
CALL = f"BTC-{E30}-90000-C"
PUT = f"BTC-{E30}-70000-P"


@pytest.fixture(scope="module")
def market():
    return make_market()


def test_isolated_models_are_listed() -> None:
    assert {"deribit-sm-isolated", "linear-sm-isolated"} <= set(list_models())


def test_one_position_account_equals_the_base_model(market) -> None:
    acct = pf("BTC", [(CALL, -1)], {"BTC": 0.3})
    iso = load_model("deribit-sm-isolated").margin(acct, market)
    base = load_model("deribit-sm").margin(acct, market)
    assert iso.initial_margin == pytest.approx(base.initial_margin, rel=1e-12)
    assert iso.maintenance_margin == pytest.approx(base.maintenance_margin, rel=1e-12)
    assert iso.equity == pytest.approx(base.equity, rel=1e-12)
    assert iso.mode == "isolated"


def test_collateral_is_shared_in_proportion_to_each_positions_im(market) -> None:
    acct = pf("BTC", [(CALL, -1), (PUT, -2)], {"BTC": 1.0})
    base = load_model("deribit-sm")
    im_call = base.margin(pf("BTC", [(CALL, -1)]), market).initial_margin
    im_put = base.margin(pf("BTC", [(PUT, -2)]), market).initial_margin
    res = load_model("deribit-sm-isolated").margin(acct, market)
    got = res.by_position["isolated_collateral"]
    # the whole 1 BTC is assigned, split im_call : im_put
    assert got[CALL] == pytest.approx(im_call / (im_call + im_put), rel=1e-12)
    assert got[PUT] == pytest.approx(im_put / (im_call + im_put), rel=1e-12)
    assert res.components["free_collateral"] == pytest.approx(0.0, abs=1e-15)


def test_explicit_isolated_collateral_is_kept_and_the_rest_is_free(market) -> None:
    acct = portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 1.0},
                                "positions": [{"instrument": CALL, "quantity": -1,
                                                "isolated_collateral": 0.01}]})
    res = load_model("deribit-sm-isolated").margin(acct, market)
    assert res.by_position.loc[CALL, "isolated_collateral"] == pytest.approx(0.01)
    assert res.components["free_collateral"] == pytest.approx(0.99)
    # 0.01 BTC cannot carry a short 90000 call's MM (0.075 BTC + mark): the position is in
    # liquidation although the account's 1 BTC covers the total MM
    assert res.equity > res.maintenance_margin
    assert res.by_position.loc[CALL, "isolated_health"] in ("liquidation", "bankrupt")
    assert res.health in ("liquidation", "bankrupt")


def test_book_uses_the_isolated_rule_and_flags_the_short_position(market) -> None:
    # long 5 deep in-the-money calls (worth ~1 BTC) and short 1 call, 0.05 BTC collateral:
    # cross margin lets the long calls' value carry the short call; isolated margin gives the
    # short call only its share of the 0.05 BTC (in proportion to IM), short of its MM
    long_deep = f"BTC-{E30}-64000-C"
    acct = pf("BTC", [(long_deep, 5), (CALL, -1)], {"BTC": 0.05})
    book = Book.from_portfolios([acct, pf("BTC", [], {"BTC": 1.0})])
    iso = load_model("deribit-sm-isolated").compute(book, market)
    cross = load_model("deribit-sm").compute(book, market)
    # same sums (standard margin is per position), same value
    np.testing.assert_allclose(iso.initial_margin, cross.initial_margin, rtol=1e-12)
    np.testing.assert_allclose(iso.maintenance_margin, cross.maintenance_margin, rtol=1e-12)
    np.testing.assert_allclose(iso.equity, cross.equity, rtol=1e-12)
    assert cross.equity[0] > cross.maintenance_margin[0]  # not liquidated in cross margin
    model = load_model("deribit-sm-isolated")
    prep = model.prepare(book, market)
    sub = model.base.evaluate(prep.base, model.isolate(prep, book).book)
    short = next(i for i, a in enumerate(sub.account_ids) if a.endswith(CALL))
    im = load_model("deribit-sm").compute(Book.from_portfolios(
        [pf("BTC", [(long_deep, 5)]), pf("BTC", [(CALL, -1)])]), market).initial_margin
    share = 0.05 * im[1] / im.sum()
    call_value = sub.equity[short] - share
    assert call_value < 0  # a short call is a liability
    assert sub.maintenance_margin[short] > share + call_value  # its own equity is short of MM
    assert iso.health[0] >= 2  # so the account is in liquidation in isolated margin
    assert iso.components["isolated_shortfall_mm"][0] > 0
    assert iso.health[1] == 0
    assert iso.initial_margin[1] == 0.0


def test_isolate_portfolios_gives_one_position_per_sub_account(market) -> None:
    model = load_model("deribit-sm-isolated")
    accts = [pf("BTC", [(CALL, -1), (PUT, -2)], {"BTC": 1.0}, account_id="a"),
             pf("BTC", [], {"BTC": 0.5}, account_id="b")]
    subs = model.isolate_portfolios(accts, market)
    assert [s.account_id for s in subs] == [f"a/{CALL}", f"a/{PUT}", "b/free"]
    assert sum(s.collateral.get("BTC", 0.0) for s in subs) == pytest.approx(1.5)
    whole = model.compute(Book.from_portfolios(accts), market)
    parts = model.compute(Book.from_portfolios(subs), market)
    assert parts.initial_margin.sum() == pytest.approx(whole.initial_margin.sum(), rel=1e-12)
    assert parts.equity.sum() == pytest.approx(whole.equity.sum(), rel=1e-12)


def test_explicit_collateral_above_the_balance_is_refused(market) -> None:
    # refused when the portfolio is read (pmargin.portfolio), before any model sees it
    with pytest.raises(InvalidInput, match="isolated_collateral"):
        portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 0.1},
                             "positions": [{"instrument": CALL, "quantity": -1,
                                            "isolated_collateral": 0.5}]})


def test_mode_flag_is_gone() -> None:
    with pytest.raises(TypeError):
        load_model("deribit-sm", mode="isolated")  # type: ignore[call-arg]


def test_a_book_already_split_is_margined_as_it_is(market) -> None:
    # sub-accounts of one position (or none) take the fast path of evaluate: the same figures,
    # components and health as isolating them again
    accts = [pf("BTC", [(CALL, -1), (PUT, 2), ("BTC-PERPETUAL", 0.5)], {"BTC": 0.4}),
             pf("BTC", [(PUT, -3)], {"BTC": 0.05}),
             pf("BTC", [], {"BTC": 1.0})]
    model = load_model("deribit-sm-isolated")
    split = Book.from_portfolios(model.isolate_portfolios(accts, market))
    assert int(np.diff(split.positions.indptr).max()) == 1
    prep = model.prepare(split, market)
    fast = model.evaluate(prep, split)
    slow = model._evaluate(prep, split, None)[0]
    for k in ("initial_margin", "maintenance_margin", "equity", "health"):
        assert np.array_equal(getattr(fast, k), getattr(slow, k)), k
    assert fast.components.keys() == slow.components.keys()
    for k, v in slow.components.items():
        assert np.array_equal(fast.components[k], v), k
    for k, v in slow.greeks.items():
        assert np.array_equal(fast.greeks[k], v), k
