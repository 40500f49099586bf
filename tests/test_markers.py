"""The ``data`` and ``slow`` markers are used: every test reading ../shared is marked ``data``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA_FIXTURES

TESTS = Path(__file__).resolve().parent
SHARED_NAMES = {"shared_path", "SHARED"}


def _marks(decorators: list[ast.expr]) -> set[str]:
    out = set()
    for d in decorators:
        node = d.func if isinstance(d, ast.Call) else d
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "mark":
            out.add(node.attr)
    return out


def _refs(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(x, ast.Name) and x.id in names for x in ast.walk(node))


def unmarked_shared_readers(path: Path) -> list[str]:
    """Tests in ``path`` that reach ../shared (directly, through a module helper or constant, or
    a shared-data fixture argument) without carrying the ``data`` mark."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_marked = any(
        isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                          for t in n.targets)
        and "data" in _marks([n.value] if not isinstance(n.value, ast.List) else n.value.elts)
        for n in tree.body)
    names = set(SHARED_NAMES)
    changed = True
    while changed:  # module-level helpers and constants built from a shared path
        changed = False
        for n in tree.body:
            if isinstance(n, ast.FunctionDef) and not n.name.startswith("test_"):
                new = {n.name} if _refs(n, names) else set()
            elif isinstance(n, ast.Assign) and _refs(n.value, names):
                new = {t.id for t in n.targets if isinstance(t, ast.Name)}
            else:
                new = set()
            if new - names:
                names |= new
                changed = True
    out = []
    for n in tree.body:
        if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"):
            if DATA_FIXTURES & {a.arg for a in n.args.args}:
                continue  # marked by the conftest hook
            if _refs(n, names) and not module_marked and "data" not in _marks(n.decorator_list):
                out.append(n.name)
    return out


def test_every_direct_shared_reader_is_marked_data():
    missing = {p.relative_to(TESTS).as_posix(): unmarked_shared_readers(p)
               for p in sorted(TESTS.rglob("test_*.py"))}
    assert {k: v for k, v in missing.items() if v} == {}


def test_checker_sees_helpers_and_constants(tmp_path):
    p = tmp_path / "test_x.py"
    p.write_text(
        "import pytest\nfrom tests.conftest import SHARED, shared_path\n"
        "DIR = SHARED / 'a'\n"
        "def _vec(n):\n    return shared_path('v', n)\n"
        "def test_a():\n    _vec('x')\n"
        "def test_b():\n    assert DIR\n"
        "@pytest.mark.data\ndef test_c():\n    _vec('y')\n"
        "def test_d(shared_dir):\n    pass\n"
        "def test_e():\n    pass\n")
    assert unmarked_shared_readers(p) == ["test_a", "test_b"]


def _collect(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *args], capture_output=True, text=True, cwd=TESTS.parent, timeout=300, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode in (0, 5), out.stdout + out.stderr  # 5: nothing selected
    return [ln for ln in out.stdout.splitlines() if "::" in ln]


def test_fixture_users_are_marked_data_by_the_hook():
    hedges = _collect("-m", "data", "tests/reports/test_hedges.py")
    assert hedges
    assert _collect("-m", "not data", "tests/reports/test_hedges.py") == []
