"""The CLI's edge: every everyday mistake is one line on stderr and exit status 2, no traceback.

Most cases use typer's runner (it keeps stdout and stderr apart); a few run the installed entry
point in a subprocess, as a user would.
"""

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pmargin.cli import app
from tests.conftest import shared_path
from tests.factories import expiry_code, make_market

runner = CliRunner()


NEEDS_MPL = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                               reason="matplotlib (the plot extra) is not installed")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge")
    (d / "market.json").write_text(json.dumps(make_market().to_dict()))
    (d / "eth.json").write_text(json.dumps(make_market(index={"ETH": 2500.0}).to_dict()))
    pf = {"margin_currency": "BTC", "collateral": {"BTC": 1.0}, "positions": [
        {"instrument": f"BTC-{expiry_code(30)}-72000-P", "quantity": -5}]}
    (d / "pf.json").write_text(json.dumps(pf))
    (d / "binary.json").write_bytes(bytes(range(256)) * 4)
    (d / "latin1.json").write_bytes('{"margin_currency": "BTC", "x": "\xe9"}'.encode("latin-1"))
    return d


def one_error_line(result, code=2):
    """The run failed with ``code`` and said so in exactly one line on stderr, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def margin_args(files, *extra):
    return ["margin", files / "pf.json", "-m", files / "market.json", *extra]


def test_unknown_preset_in_margin(files):
    line = one_error_line(run(*margin_args(files, "--model", "nope")))
    assert "'nope'" in line


@pytest.mark.parametrize("command", [
    ["liquidate", "{pf}", "-m", "{market}", "--model", "nope"],
    ["bench", "book", "--accounts", "10", "--preset", "nope"],
    ["params", "show", "nope"],
])
def test_unknown_preset_in_every_command(files, command):
    args = [c.format(pf=files / "pf.json", market=files / "market.json") for c in command]
    assert "'nope'" in one_error_line(run(*args))


@pytest.mark.parametrize(("args", "valid"), [
    (["stress", "--loss-mode", "magic"], ["adl", "socialise"]),
    (["stress", "--model", "magic"], ["portfolio", "cross", "isolated"]),
])
def test_unknown_choice_is_refused_with_the_valid_choices(args, valid):
    line = one_error_line(run(*args))
    assert "magic" in line
    for v in valid:
        assert v in line


def test_unknown_execution_is_refused(files):
    line = one_error_line(run("liquidate", files / "pf.json", "-m", files / "market.json",
                              "--execution", "magic"))
    assert "market" in line
    assert "takeover" in line
    assert "auction" in line


@pytest.mark.parametrize("args", [
    ["bench", "book", "--accounts", "0"],
    ["bench", "book", "--accounts", "-5"],
    ["bench", "book", "--runs", "0"],
    ["stress", "--accounts", "0"],
])
def test_non_positive_counts_are_refused(args):
    line = one_error_line(run(*args))
    assert args[-2] in line


@pytest.mark.parametrize("shock", ["-1", "-1.5", "nan", "inf"])
def test_impossible_shock_is_refused(shock):
    line = one_error_line(run("stress", "--accounts", "5", "--shock", shock))
    assert "--shock" in line


def test_missing_portfolio_file(files):
    line = one_error_line(run("margin", files / "absent.json", "-m", files / "market.json"))
    assert "absent.json" in line


def test_missing_market_file(files):
    line = one_error_line(run("margin", files / "pf.json", "-m", files / "absent.csv.gz"))
    assert "absent.csv.gz" in line


@pytest.mark.parametrize("name", ["binary.json", "latin1.json"])
def test_non_utf8_portfolio_names_the_file(files, name):
    line = one_error_line(run("margin", files / name, "-m", files / "market.json"))
    assert name in line
    assert "UTF-8" in line


def test_non_utf8_market_names_the_file(files):
    line = one_error_line(run("margin", files / "pf.json", "-m", files / "binary.json"))
    assert "binary.json" in line


@pytest.mark.data
def test_truncated_csv_gz_market(tmp_path, files):
    real = shared_path("data", "deribit", "deribit_options_snapshot_20260822T153351Z.csv.gz")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(real.read_bytes()[:20_000])
    one_error_line(run("margin", files / "pf.json", "-m", cut))


def test_gzip_of_binary_market(tmp_path, files):
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(bytes(range(256)) * 8))
    one_error_line(run("margin", files / "pf.json", "-m", bad))


def test_plot_into_a_folder_is_refused_and_names_it(files, tmp_path):
    line = one_error_line(run(*margin_args(files, "--model", "pmargin", "--plot", tmp_path)))
    assert str(tmp_path) in line
    assert "folder" in line
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing misreported


@pytest.mark.parametrize("target", ["absent-dir/risk.png", "risk.docx", "risk"])
def test_bad_plot_path_is_refused_before_any_work(files, tmp_path, target):
    line = one_error_line(run(*margin_args(files, "--model", "pmargin", "--plot",
                                           tmp_path / target)))
    assert "--plot" in line


@NEEDS_MPL
def test_plot_with_a_standard_margin_model_is_refused(files, tmp_path):
    line = one_error_line(run(*margin_args(files, "--model", "deribit-sm", "--plot",
                                           tmp_path / "x.png")))
    assert "portfolio-margin" in line


@NEEDS_MPL
def test_plot_to_svg_is_written_where_reported(files, tmp_path):
    out = tmp_path / "risk.svg"
    res = run(*margin_args(files, "--model", "pmargin", "--plot", out))
    assert res.exit_code == 0, res.stderr
    assert out.read_text().lstrip().startswith("<?xml")
    assert f"plot written to {out}" in res.stdout.replace("\n", "")


def test_stress_plot_into_a_folder_is_refused(tmp_path):
    one_error_line(run("stress", "--accounts", "5", "--plot", tmp_path))


@pytest.mark.parametrize("target", ["absent-dir/h.md", "/proc/hedges.md"])
def test_unwritable_markdown_path(files, target, tmp_path):
    path = target if target.startswith("/") else tmp_path / target
    line = one_error_line(run("hedges", "-m", files / "market.json", "--markdown", path))
    assert str(path) in line


def test_hedges_on_a_market_without_the_underlying(files):
    line = one_error_line(run("hedges", "-m", files / "eth.json"))
    assert "BTC" in line


def test_pmargin_shared_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("PMARGIN_SHARED", str(tmp_path / "nowhere"))
    line = one_error_line(run("demo"))
    assert "PMARGIN_SHARED" in line


def test_params_validate_bad_file_exits_2_one_line_each(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe not toml")
    res = run("params", "validate", bad)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert str(bad) in res.stderr


def test_params_validate_every_shipped_parameter_file_by_its_kind():
    import pmargin

    root = Path(pmargin.__file__).parent
    files = [*sorted(root.glob("liquidation/*.toml")), root / "service" / "venue.toml"]
    files += sorted(root.glob("models/presets/*.toml"))
    res = run("params", "validate", *files)
    assert res.exit_code == 0, res.stderr
    kinds = [line.rsplit("(", 1)[1].rstrip(")") for line in res.stdout.strip().splitlines()]
    assert kinds[:7] == ["auction", "bidders", "cascade", "ledger", "liquidity", "planner",
                         "venue"]
    assert set(kinds[7:]) == {"preset"}


def test_params_validate_wrong_kind_names_the_unknown_key(tmp_path):
    import pmargin

    auction = Path(pmargin.__file__).parent / "liquidation" / "auction.toml"
    res = run("params", "validate", "--kind", "planner", auction)
    assert res.exit_code == 2
    assert "(planner)" in res.stderr
    assert "unknown field" in res.stderr
    bad = run("params", "validate", "--kind", "magic", auction)
    assert bad.exit_code == 2
    assert "--kind" in bad.stderr
    assert "magic" in bad.stderr


def test_unexpected_exception_is_one_line_exit_1(files, monkeypatch):
    import pmargin.reports.greeks

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(pmargin.reports.greeks, "portfolio_greeks", boom)
    monkeypatch.delenv("PMARGIN_TRACEBACK", raising=False)
    line = one_error_line(run("greeks", files / "pf.json", "-m", files / "market.json"), code=1)
    assert "kaboom" in line
    assert "PMARGIN_TRACEBACK=1" in line


def test_traceback_on_request(files, monkeypatch):
    import pmargin.reports.greeks

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(pmargin.reports.greeks, "portfolio_greeks", boom)
    monkeypatch.setenv("PMARGIN_TRACEBACK", "1")
    res = run("greeks", files / "pf.json", "-m", files / "market.json")
    assert isinstance(res.exception, RuntimeError)


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    res = run("--version")
    assert res.exit_code == 0
    assert res.stdout.strip() == f"pmargin {version('pmargin')}"


def test_help_lists_every_model():
    from pmargin.models import list_models

    res = run("--help")
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    for name in list_models():
        assert name in text
    res = run("margin", "--help")
    text = " ".join(res.stdout.replace("│", " ").split())
    for name in list_models():
        assert name in text


@pytest.mark.slow
def test_entry_point_subprocess_one_line_and_status(files):
    """The real console script: bad input exits 2 with one stderr line and nothing on stdout."""
    exe = os.path.join(os.path.dirname(sys.executable), "pmargin")
    env = {k: v for k, v in os.environ.items() if k != "PMARGIN_TRACEBACK"}
    out = subprocess.run([exe, "margin", str(files / "binary.json"), "-m",
                          str(files / "market.json")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([exe, "stress", "--loss-mode", "magic"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "adl" in out.stderr


@pytest.mark.parametrize("content", [b"\xb4\x00\x01binary", b"{not json", b"[1, 2]"])
def test_conformance_run_on_a_file_that_is_not_a_case_is_bad_input(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    res = run("conformance", "run", bad)
    assert res.exit_code == 2
    assert str(bad) in one_error_line(res)
