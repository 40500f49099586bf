"""The systemic HTML report: self-contained, and rendered by a real headless Chromium with no
console error and every plot decoded (Debian ``chromium`` + ``chromium-driver``; the browser
test skips, saying why, without them). Marked ``data``: the report reads the latest Deribit
snapshot and the crash history when ../shared is there (a generated market otherwise)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("matplotlib",
                    reason="the report's figures need matplotlib (pip install pmargin[plot])")

from pmargin.reports.html import ReportOptions, collect_report, render_html
from tests.browser import console_errors


@pytest.fixture(scope="module")
def report_html() -> str:
    from pmargin.demo import find_shared

    episodes = ("ftx-2022",) if find_shared() is not None else ()
    opts = ReportOptions(accounts=60, models=("deribit-sm", "deribit-pm"), replay_accounts=30,
                         episodes=episodes, assets=("ETH",), regimes=("deribit-sm", "deribit-pm"),
                         bates=False, paths=500)
    return render_html(collect_report(opts))


@pytest.mark.data
@pytest.mark.slow
def test_report_is_self_contained(report_html):
    # no external resource: every src/href is a data: URI, no script at all
    assert "<script" not in report_html
    for ref in re.findall(r'(?:src|href)="([^"]*)"', report_html):
        assert ref.startswith("data:"), ref
    assert report_html.count('<img class="plot"') >= 2
    for section in ("Capital efficiency", "Stress audit", "Stochastic-volatility stress",
                    "Crash replays"):
        assert f"<h2>{section}</h2>" in report_html


@pytest.mark.data
@pytest.mark.slow
def test_report_renders_in_chromium(report_html, browser, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(report_html, encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.title == "pmargin systemic report"
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth,"
        " i.naturalHeight]);")
    ids = {i[0] for i in imgs}
    assert {"plot-audit", "plot-stochvol"} <= ids
    for img_id, complete, w, h in imgs:
        assert complete, img_id
        assert w > 100, img_id  # decoded, not a broken image
        assert h > 100, img_id
    assert console_errors(browser) == []
    tables = browser.execute_script("return document.querySelectorAll('table').length;")
    assert tables >= 3
