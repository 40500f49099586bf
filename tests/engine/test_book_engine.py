"""Book engine: a book gives exactly the answer of each account computed alone."""

import numpy as np
import pytest
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.engine.book_engine import BookEngine
from pmargin.models import list_models, load_model
from pmargin.synthetic import Archetypes, chain_universe, generate_book
from tests.conftest import model_param
from tests.factories import expiry_code, make_market

MARKET = make_market()
UNIVERSE = chain_universe(MARKET, "BTC")


def random_book(seed: int, n: int = 40) -> Book:
    arch = Archetypes(market_maker=0.1, collateral_only=0.1, empty=0.1, mm_options=(5, 30))
    book = generate_book(MARKET, UNIVERSE, n, seed=seed, archetypes=arch)
    # explicit zero-quantity cells must be harmless
    pos = book.positions.tolil()
    pos[0, 0] = 0.0
    book.positions = sp.csr_matrix(pos)
    book.entry_notional = sp.csr_matrix(book.positions.shape)  # no entries known
    book.entry_notional = book.positions.copy()
    book.entry_notional.data[:] = np.nan
    return book


def rel_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-9), initial=0.0)


# derive-pm2 margins USDC accounts only: random_book is coin-margined (tests/models/test_contract.py
# checks derive-pm2 on USDC books and that it refuses coin-margined ones)
@pytest.mark.parametrize("preset", [model_param(m) for m in list_models() if m != "derive-pm2"])
def test_book_equals_each_account_alone(preset):
    model = load_model(preset)
    book = random_book(1)
    res = model.compute(book, MARKET)
    for r in range(book.n_accounts):
        one = model.margin(book.portfolio(r), MARKET)
        assert rel_diff(res.initial_margin[r], one.initial_margin) <= 1e-9
        assert rel_diff(res.maintenance_margin[r], one.maintenance_margin) <= 1e-9
        assert rel_diff(res.equity[r], one.equity) <= 1e-9
        for g in ("delta", "delta_usd", "gamma", "vega", "theta"):
            assert res.greeks[g][r] == pytest.approx(one.greeks[g], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("preset", ["deribit-pm", "deribit-sm", "okx-pm"])
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_chunking_and_permutation_do_not_change_results(preset, chunk):
    model = load_model(preset)
    book = random_book(2)
    ref = model.compute(book, MARKET)
    eng = BookEngine(model, book, MARKET, chunk_size=chunk)
    assert rel_diff(eng.result.initial_margin, ref.initial_margin) <= 1e-9
    perm = np.random.default_rng(3).permutation(book.n_accounts)
    res_p = model.compute(book.subset(perm), MARKET)
    assert rel_diff(res_p.initial_margin, ref.initial_margin[perm]) <= 1e-9
    assert rel_diff(res_p.maintenance_margin, ref.maintenance_margin[perm]) <= 1e-9


def test_expired_position_is_settled_value_without_margin():
    from datetime import timedelta

    from pmargin.market.loaders import load_market_json
    from pmargin.portfolio import portfolio_from_dict

    later = make_market()  # same data, valued after the 7-day expiry
    data = later.to_dict()
    data["valuation_time"] = (later.valuation_time + timedelta(days=8)).isoformat()
    data["instruments"] = {k: v for k, v in data["instruments"].items()
                           if expiry_code(7) not in k}
    data["settlement_prices"] = {f"BTC-{expiry_code(7)}": 80000.0}
    moved = load_market_json(data, settle_expired=True)  # settlement is an explicit opt-in
    name = f"BTC-{expiry_code(7)}-72000-P"
    res = load_model("deribit-pm").margin(
        portfolio_from_dict({"margin_currency": "BTC", "positions": [
            {"instrument": name, "quantity": -1}]}), moved)
    assert res.initial_margin == pytest.approx(0.0, abs=1e-12)
    assert res.equity == pytest.approx(0.0, abs=1e-12)  # 72000 put is out of the money at 80000


def test_incremental_trade_and_deposit_match_full_recompute():
    model = load_model("deribit-pm")
    book = random_book(4)
    eng = BookEngine(model, book, MARKET)
    acc = book.account_ids[5]
    inst = UNIVERSE[3]
    px = float(eng.prep.table.mark[3])
    eng.apply_trade(acc, inst, -2.5, px)
    eng.deposit(acc, "BTC", 0.7)
    inc = eng.result.initial_margin.copy()
    eq = eng.result.equity.copy()
    full = eng.recompute()
    assert rel_diff(inc, full.initial_margin) <= 1e-12
    assert rel_diff(eq, full.equity) <= 1e-12


def test_book_copy_holds_pending_rows_and_leaves_the_engine_alone():
    model = load_model("deribit-pm")
    book = random_book(6)
    eng = BookEngine(model, book, MARKET)
    acc = book.account_ids[3]
    eng.apply_trade(acc, UNIVERSE[2], -1.5, float(eng.prep.table.mark[2]))
    eng.deposit(acc, "BTC", 0.25)
    pending = dict(eng._overlay)
    assert pending, "the trade must sit in the overlay for this test to mean anything"
    copy = eng.book_copy()
    assert eng._overlay == pending  # not merged into the engine
    # margined on its own, the copy gives what the engine holds for every account
    alone = BookEngine(model, copy, MARKET).result
    assert rel_diff(alone.initial_margin, eng.result.initial_margin) <= 1e-12
    assert rel_diff(alone.equity, eng.result.equity) <= 1e-12
    # independent arrays: changing the copy changes nothing in the engine
    before = eng.book_copy()
    copy.positions.data[:] = 0.0
    copy.collateral[:] = 0.0
    after = eng.book_copy()
    assert (after.positions != before.positions).nnz == 0
    assert np.array_equal(after.collateral, before.collateral)


def test_what_if_equals_margin_of_modified_account_and_does_not_mutate():
    model = load_model("pmargin")
    book = random_book(5)
    eng = BookEngine(model, book, MARKET)
    acc = book.account_ids[7]
    r = eng.row(acc)
    inst = UNIVERSE[10]
    px = float(eng.prep.table.mark[10])
    before = eng.result.initial_margin[r]
    w = eng.what_if(acc, [(inst, -3.0, px)])
    assert eng.result.initial_margin[r] == before
    eng.apply_trade(acc, inst, -3.0, px)
    assert w.initial_margin == pytest.approx(eng.result.initial_margin[r], rel=1e-12)
    assert w.passed == (w.equity >= w.initial_margin or
                        (w.initial_margin <= w.before_initial_margin and
                         w.equity >= w.before_equity))


def test_withdrawal_never_leaves_equity_below_im():
    model = load_model("deribit-pm")
    book = random_book(6)
    eng = BookEngine(model, book, MARKET)
    for r in range(book.n_accounts):
        acc = book.account_ids[r]
        free = eng.result.equity[r] - eng.result.initial_margin[r]
        if free > 1e-6:
            assert eng.check_withdrawal(acc, "BTC", 0.999 * free).passed
            assert not eng.check_withdrawal(acc, "BTC", free + 1e-3).passed
        else:
            assert not eng.check_withdrawal(acc, "BTC", 1e-3).passed


@pytest.mark.slow
def test_dask_local_cluster_equals_local():
    distributed = pytest.importorskip("distributed")
    from pmargin.engine.executors import DaskExecutor

    model = load_model("deribit-pm")
    book = random_book(8, n=60)
    local = BookEngine(model, book, MARKET, chunk_size=13).result
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = BookEngine(model, book, MARKET, chunk_size=13,
                            executor=DaskExecutor(client)).result
    assert np.array_equal(remote.initial_margin, local.initial_margin)
    assert np.array_equal(remote.maintenance_margin, local.maintenance_margin)
    assert np.array_equal(remote.equity, local.equity)


def test_an_older_market_cannot_replace_a_newer_one():
    from datetime import timedelta

    from pmargin.errors import StaleMarketData
    from pmargin.market.loaders import load_market_json

    model = load_model("deribit-pm")
    eng = BookEngine(model, random_book(9, n=5), MARKET)
    data = MARKET.to_dict()
    data["valuation_time"] = (MARKET.valuation_time - timedelta(minutes=1)).isoformat()
    older = load_market_json(data)
    with pytest.raises(StaleMarketData, match="valuation_time"):
        eng.update_market(older)
    assert eng.market is MARKET


@pytest.mark.parametrize("preset", ["deribit-pm", "pmargin", "okx-pm", "linear-sm"])
def test_multi_underlying_usdc_book_equals_accounts_alone(preset):
    from pmargin.portfolio import portfolio_from_dict

    rng = np.random.default_rng(21)
    market = make_market(linear=True)  # lists the USDC twins: books use listed instruments only
    names = [i.name for i in chain_universe(market, "BTC", linear=True)]
    names += [i.name for i in chain_universe(market, "ETH", linear=True)]
    names += ["BTC-PERPETUAL", f"ETH-{expiry_code(30)}-2500-C"]  # inverse ones too
    pfs = []
    for a in range(25):
        k = int(rng.integers(0, 6))
        pos = [{"instrument": str(n), "quantity": float(np.round(rng.normal(0, 3), 2)) or 0.5}
               for n in rng.choice(names, size=k, replace=False)]
        coll = {"USDC": float(rng.uniform(0, 5e4)), "BTC": float(rng.uniform(0, 1)),
                "ETH": float(rng.uniform(0, 5)), "USDT": float(rng.uniform(0, 1e3))}
        pfs.append(portfolio_from_dict({"margin_currency": "USDC", "collateral": coll,
                                        "positions": pos, "account_id": f"u{a}"}))
    model = load_model(preset)
    book = Book.from_portfolios(pfs)
    res = model.compute(book, market)
    for r, p in enumerate(pfs):
        one = model.margin(p, market)
        assert rel_diff(res.initial_margin[r], one.initial_margin) <= 1e-9
        assert rel_diff(res.maintenance_margin[r], one.maintenance_margin) <= 1e-9
        assert rel_diff(res.equity[r], one.equity) <= 1e-9


def test_dask_resident_chunks_follow_book_changes():
    distributed = pytest.importorskip("distributed")
    from pmargin.engine.executors import DaskExecutor

    model = load_model("deribit-pm")
    book = random_book(12, n=30)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        ex = DaskExecutor(client)
        eng = BookEngine(model, book, MARKET, chunk_size=7, executor=ex)
        first = dict(ex._resident)
        eng.recompute()
        assert ex._resident.keys() == first.keys()  # nothing re-sent on a second pass
        acc = book.account_ids[3]
        eng.deposit(acc, "BTC", 2.0)
        eng.apply_trade(acc, UNIVERSE[2], -1.0, float(eng.prep.table.mark[2]))
        incremental = eng.result.initial_margin.copy(), eng.result.equity.copy()
        full = eng.recompute()
        assert ex._resident.keys() != first.keys()  # the changed book was sent again
    assert rel_diff(full.initial_margin, incremental[0]) <= 1e-12
    assert rel_diff(full.equity, incremental[1]) <= 1e-12


@pytest.mark.parametrize("preset", ["deribit-pm", "okx-pm", "deribit-sm"])
def test_check_account_equals_the_account_margined_alone(preset):
    # check_account takes the model's one-row kernel when it has one: same figures as
    # margining the hypothetical account alone
    from pmargin.portfolio import portfolio_from_dict

    model = load_model(preset)
    book = random_book(4, n=12)
    eng = BookEngine(model, book, MARKET)
    for r in range(book.n_accounts):
        p = book.portfolio(r)
        pos = {x.instrument.name: (x.quantity * 2.0, np.nan) for x in p.positions}
        coll = {"BTC": 0.7}
        v = eng.check_account(book.account_ids[r], pos, coll)
        alone = model.margin(portfolio_from_dict({
            "margin_currency": "BTC", "collateral": coll,
            "positions": [{"instrument": k, "quantity": q} for k, (q, _) in pos.items()]}),
            MARKET)
        assert rel_diff(v.initial_margin, alone.initial_margin) <= 1e-9
        assert rel_diff(v.maintenance_margin, alone.maintenance_margin) <= 1e-9
        assert rel_diff(v.equity, alone.equity) <= 1e-9
