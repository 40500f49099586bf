"""PMARGIN_SHARED: an explicit folder that does not exist is an error, never a fall-back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pmargin.errors import InvalidInput
from pmargin.shared_folder import ENV_VAR, shared_folder

REPO = Path(__file__).resolve().parents[1]


def test_missing_directory_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(InvalidInput) as err:
        shared_folder((tmp_path,))
    assert err.value.field == "PMARGIN_SHARED"
    assert err.value.value == str(tmp_path / "nope")


def test_a_file_is_not_a_directory(monkeypatch, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv(ENV_VAR, str(f))
    with pytest.raises(InvalidInput, match="not a directory"):
        shared_folder()


def test_explicit_folder_without_the_required_data_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(InvalidInput, match="data/deribit"):
        shared_folder((), "data/deribit")
    (tmp_path / "data" / "deribit").mkdir(parents=True)
    assert shared_folder((), "data/deribit") == tmp_path


def test_without_the_variable_default_places_are_tried(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "b" / "data" / "deribit").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    assert shared_folder((tmp_path / "a", tmp_path / "b"), "data/deribit") == tmp_path / "b"
    assert shared_folder((tmp_path / "missing",)) is None


def test_demo_does_not_fall_back_to_generated_data(monkeypatch, tmp_path):
    from pmargin.demo import demo_market, find_shared

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(InvalidInput, match="PMARGIN_SHARED"):
        find_shared()
    with pytest.raises(InvalidInput, match="PMARGIN_SHARED"):
        demo_market()


def test_demo_command_fails_with_one_line_and_exit_2(tmp_path):
    env = {**os.environ, ENV_VAR: str(tmp_path / "typo")}
    run = subprocess.run([sys.executable, "-m", "pmargin.cli", "demo"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    if "No module named pmargin.cli.__main__" in run.stderr:  # pragma: no cover
        pytest.skip("cli has no __main__")
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    assert "PMARGIN_SHARED" in out
    assert "Traceback" not in out


def test_test_suite_refuses_a_missing_shared_folder(tmp_path):
    env = {**os.environ, ENV_VAR: str(tmp_path / "typo")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p",
                          "no:cacheprovider", "--co", "tests/test_validation.py"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode != 0
    assert "PMARGIN_SHARED" in run.stdout + run.stderr
