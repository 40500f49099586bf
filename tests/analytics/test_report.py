"""Backtest report: files, plain-words verdicts and the model overview from the summary."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from pmargin.analytics.backtest import BacktestSpec, run_backtest, summarise
from pmargin.analytics.history_params import load_history_params
from pmargin.analytics.report import model_overview, write_report
from pmargin.analytics.smile_template import SmileTemplate
from pmargin.errors import InvalidInput
from tests.analytics.conftest import DVOL_START


@pytest.fixture(scope="module")
def result(gen_series):
    p = load_history_params()
    tpl = SmileTemplate.flat("BTC", p)
    spec = BacktestSpec(asset="BTC", start=DVOL_START, end=DVOL_START + timedelta(days=5),
                        models=("linear-sm", "span"), portfolios=("short_put", "calendar"))
    return run_backtest(spec, series=gen_series, template=tpl)


def test_overview_adds_up_the_summary(result):
    s = summarise(result)
    over = model_overview(s)
    assert len(over) == 2 * 2
    for _, r in over.iterrows():
        g = s[(s.model == r.model) & (s.horizon_days == r.horizon_days) & (s.margin == "IM")]
        assert r.exceedances == g.exceedances.sum()
        rej = g.kupiec_p < 0.05
        assert r.too_many == int((rej & (g.exceedances > 0.01 * g.n)).sum())
        assert r.too_few == int((rej & (g.exceedances < 0.01 * g.n)).sum())
        assert r.median_margin_usd == pytest.approx(g.average_margin_usd.median())


def test_report_files(result, tmp_path):
    pytest.importorskip("matplotlib")
    out = write_report(result, tmp_path / "rep")
    names = {p.name for p in out}
    assert names == {"summary.csv", "daily.csv.gz", "summary.md", "coverage_by_model.png",
                     "margin_vs_loss_linear-sm.png", "margin_vs_loss_span.png",
                     "procyclicality.csv", "procyclicality.md"}
    for p in out:
        assert p.stat().st_size > 0
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "## Verdicts (initial margin)" in md
    assert md.count("* **") == 4  # one verdict per model and horizon
    import pandas as pd

    daily = pd.read_csv(tmp_path / "rep" / "daily.csv.gz")
    assert len(daily) == len(result.dates) * 2 * 2
    assert np.allclose(daily["im"], result.im.ravel())
    # procyclicality: the whole run per model and portfolio, its peak-to-trough by hand
    pc = pd.read_csv(tmp_path / "rep" / "procyclicality.csv")
    hist = pc[pc.window == "history"]
    assert len(hist) == len(result.models) * len(result.portfolios)
    usd = result.im[:, 0, 0] * result.mc_usd
    row = hist[(hist.model == result.models[0]) & (hist.portfolio == result.portfolios[0])]
    assert row.peak_to_trough.iloc[0] == pytest.approx(np.nanmax(usd) / np.nanmin(usd))
    assert "## history" in (tmp_path / "rep" / "procyclicality.md").read_text()


def test_report_of_a_model_named_by_a_preset_path(result, tmp_path):
    pytest.importorskip("matplotlib")
    from dataclasses import replace

    named = replace(result, models=["docs/examples/x.toml", *result.models[1:]])
    out = write_report(named, tmp_path / "rep")
    assert tmp_path / "rep" / "margin_vs_loss_docs_examples_x.toml.png" in out


def test_report_folder_errors(result, tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(InvalidInput) as e:
        write_report(result, f, figures=False)
    assert e.value.field == "--report"
    with pytest.raises(InvalidInput):
        write_report(result, tmp_path / "a" / "b", figures=False)
