"""``pmargin backtest``: bad input is exit 2 naming the option; a short real run with a report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pmargin.cli import app
from tests.conftest import shared_path

runner = CliRunner()


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "deribit-pmm"], "deribit-pm"),
    (["--horizon", "0"], "horizons_days"),
    (["--portfolio", "short_puts"], "portfolios"),
    (["--settlement", "quanto"], "settlement"),
    (["--start", "2020-13-01"], "--start"),
    (["--asset", "DOGE"], "asset"),
])
def test_bad_input_is_exit_2_naming_it(args, needle):
    out = runner.invoke(app, ["backtest", *args])
    assert out.exit_code == 2, out.output
    assert needle in out.output


def test_report_must_be_a_folder(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    out = runner.invoke(app, ["backtest", "--report", str(f)])
    assert out.exit_code == 2
    assert "--report" in out.output
    out = runner.invoke(app, ["backtest", "--report", str(tmp_path / "no" / "such")])
    assert out.exit_code == 2
    assert "does not exist" in out.output


@pytest.mark.data
@pytest.mark.slow
def test_short_real_run_with_report(tmp_path):
    shared_path("data", "prices")
    pytest.importorskip("matplotlib", reason="--report draws figures (pip install pmargin[plot])")
    rep = tmp_path / "rep"
    out = runner.invoke(app, [
        "backtest", "--start", "2022-06-08", "--end", "2022-06-20", "--model", "span",
        "--model", "deribit-sm", "--json", "--report", str(rep)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["days"] == 13
    assert {m["model"] for m in data["models"]} == {"span", "deribit-sm"}
    for name in ("summary.csv", "daily.csv.gz", "summary.md", "coverage_by_model.png",
                 "margin_vs_loss_span.png"):
        assert (rep / name).is_file(), name
    md = (rep / "summary.md").read_text()
    assert "## Verdicts" in md
    assert "span" in md
