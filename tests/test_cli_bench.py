"""``pmargin bench book`` is a thin wrapper over benchmarks/bench_book.py in the source checkout."""

import json
from pathlib import Path

from typer.testing import CliRunner

import pmargin.cli as cli

runner = CliRunner()


def test_bench_book_runs_the_checkout_benchmark():
    out = runner.invoke(cli.app, ["bench", "book", "--accounts", "30", "--runs", "1", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["accounts"] == 30
    assert data["loop_sample"] == 30
    assert data["max_rel_diff"] < 1e-9  # the book equals every account margined alone
    assert isinstance(data["numba"], bool)


def test_bench_book_without_the_checkout_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "pmargin" / "cli.py"))
    out = runner.invoke(cli.app, ["bench", "book", "--accounts", "20"])
    assert out.exit_code == 2
    assert "source checkout" in out.output
    assert str(Path(tmp_path) / "benchmarks" / "bench_book.py") in out.output.replace("\n", "")
    assert "Traceback" not in out.output
