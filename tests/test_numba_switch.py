"""One Numba switch (pmargin._numba): decided once, and every compiled path asks it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pmargin"
TWIN = "pricing/_black76_numba.py"
"""The Numba twin of Black-76 imports numba itself: it is loaded only when the switch is on."""


def _sources() -> dict[str, str]:
    return {p.relative_to(SRC).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(SRC.rglob("*.py"))}


def _imports_numba(text: str) -> bool:
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "numba" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numba":
            return True
    return False


def _names_the_variable(text: str) -> bool:
    return any(isinstance(node, ast.Constant) and node.value == "PMARGIN_DISABLE_NUMBA"
               for node in ast.walk(ast.parse(text)))


def test_only_the_switch_reads_the_environment_variable():
    readers = sorted(rel for rel, text in _sources().items() if _names_the_variable(text))
    assert readers == ["_numba.py"]


def test_only_the_switch_and_the_twin_import_numba():
    importers = sorted(rel for rel, text in _sources().items() if _imports_numba(text))
    assert set(importers) <= {"_numba.py", TWIN}
    assert "_numba.py" in importers


PROBE = """
    import warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        from pmargin.errors import PerformanceWarning
        from pmargin import _numba
        from pmargin.pricing import kernels
        from pmargin.models import _pm_kernels
    n = sum(issubclass(x.category, PerformanceWarning) for x in w)
    print(_numba.NUMBA_ENABLED, kernels.NUMBA_ENABLED, _pm_kernels.NUMBA_ENABLED,
          _pm_kernels.numba is _numba.numba, n)
"""


def _run(prefix: str = "", **env: str) -> list[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PMARGIN_DISABLE_NUMBA"}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", prefix + textwrap.dedent(PROBE)],
        capture_output=True, text=True, env=full_env, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_disabled_by_environment_everywhere_silently():
    assert _run(PMARGIN_DISABLE_NUMBA="1") == ["False", "False", "False", "True", "0"]


def test_missing_numba_disables_everywhere_with_one_warning():
    prefix = "import sys\nsys.modules['numba'] = None\n"
    assert _run(prefix) == ["False", "False", "False", "True", "1"]


def test_enabled_everywhere_when_numba_imports():
    pytest.importorskip("numba")
    assert _run(PMARGIN_DISABLE_NUMBA="0") == ["True", "True", "True", "True", "0"]


LATE = """
    import os
    from pmargin._numba import DISABLE_ENV_VAR
    os.environ[DISABLE_ENV_VAR] = "1"  # after importing the switch, before any kernel asks
    from pmargin.pricing import kernels
    os.environ[DISABLE_ENV_VAR] = "0"  # decided already: no effect
    from pmargin.models import _pm_kernels
    print(kernels.NUMBA_ENABLED, _pm_kernels.NUMBA_ENABLED)
"""


def test_decision_is_taken_at_first_use_and_kept():
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LATE)], capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PMARGIN_DISABLE_NUMBA"},
        timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
