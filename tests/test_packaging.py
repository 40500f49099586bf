"""Packaging habits: one version (pyproject.toml), a CHANGELOG, a LICENSE matching pyproject."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pmargin

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_the_pyproject_version():
    assert pmargin.__version__ == PYPROJECT["project"]["version"]
    assert "__version__" in pmargin.__all__


def test_no_source_file_writes_the_version():
    version = PYPROJECT["project"]["version"]
    writers = sorted(
        p.relative_to(REPO).as_posix() for p in (REPO / "src" / "pmargin").rglob("*.py")
        if any(isinstance(n, ast.Constant) and n.value == version
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))))
    assert writers == []


def test_changelog_has_the_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{PYPROJECT['project']['version']}]" in text
    assert "## [Unreleased]" in text


def test_license_file_matches_pyproject():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
