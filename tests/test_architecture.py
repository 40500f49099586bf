"""The layer table of docs/architecture.md is true: imports point one way, and the table says which.

The table is read from the Markdown itself (``| layer | module | holds | imports |`` under
"## Layers"), so it exists once. Each module under ``src/pmargin`` belongs to the row with the most
specific path (a file row such as ``models/params.py`` beats a package row such as ``book/``).
Rules checked on every ``import`` statement (top level, inside functions, under ``TYPE_CHECKING``):

* a module imports only its own row or rows of a strictly lower layer; importing
  ``pmargin.a.b`` also runs package ``a/__init__.py``, which counts as an import of its row;
* the ``imports`` cell of each row lists exactly the rows it imports, leaving out the foundation
  (layers 0 and 1, importable from anywhere);
* every module has a row and every row has a module;
* the library never imports ``benchmarks`` or ``tests``.

Violations being removed on other branches are listed in :data:`KNOWN_VIOLATIONS`; each is an
expected failure (strict), so the entry must be deleted once the violation is gone.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "pmargin"
DOC = REPO / "docs" / "architecture.md"
FOUNDATION_MAX_LAYER = 1

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
}
"""(importing module, imported row) -> why it is still there. Delete an entry when it is fixed."""


@dataclass(frozen=True)
class Row:
    """One row of the layer table."""

    layer: int
    key: str
    imports: frozenset[str]

    def matches(self, rel: str) -> bool:
        """Whether module path ``rel`` (relative to src/pmargin) belongs to this row."""
        return rel.startswith(self.key) if self.key.endswith("/") else rel == self.key


def parse_table(text: str) -> list[Row]:
    """Read the layer table from the Markdown of docs/architecture.md."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["layer", "module", "holds", "imports"], header
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        keys = re.findall(r"`([^`]+)`", cells[1])
        assert len(keys) == 1, f"one module path per row: {line}"
        imports = frozenset(re.findall(r"`([^`]+)`", cells[3]))
        rows.append(Row(int(cells[0]), keys[0], imports))
    return rows


@cache
def table() -> tuple[Row, ...]:
    return tuple(parse_table(DOC.read_text(encoding="utf-8")))


def modules() -> list[str]:
    """Paths of every module under src/pmargin, relative to it, with ``/`` separators."""
    return sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py"))


def row_of(rel: str) -> Row | None:
    """The most specific row holding module ``rel``."""
    hits = [r for r in table() if r.matches(rel)]
    return max(hits, key=lambda r: len(r.key)) if hits else None


def resolve(dotted: str) -> list[str]:
    """Module files that importing ``dotted`` (``pmargin.x.y...``) runs, innermost last.

    The longest prefix of ``dotted`` that is a module or package is the target (the rest are
    attributes); every package on the way contributes its ``__init__.py``, except the root.
    """
    parts = dotted.split(".")[1:]
    out = []
    for n in range(1, len(parts) + 1):
        base = "/".join(parts[:n])
        if (SRC / base / "__init__.py").is_file():
            out.append(f"{base}/__init__.py")
        elif (SRC / f"{base}.py").is_file():
            out.append(f"{base}.py")
            break
        else:
            break
    return out


def imported_names(rel: str) -> set[str]:
    """Absolute dotted names a module imports (``from m import a`` gives ``m.a``)."""
    path = SRC / rel
    package = ["pmargin", *rel.split("/")[:-1]]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def dependencies(rel: str) -> set[str]:
    """Module files of the package that ``rel`` imports (with the packages they run)."""
    own_packages = {"/".join(rel.split("/")[:k]) + "/__init__.py"
                    for k in range(1, rel.count("/") + 1)}
    deps: set[str] = set()
    for name in imported_names(rel):
        if name == "pmargin" or name.startswith("pmargin."):
            deps.update(d for d in resolve(name) if d not in own_packages and d != rel)
    return deps


def edges() -> dict[tuple[str, str], Row]:
    """(module, imported row key) -> the importing module's row, for every cross-row import."""
    return _edges(SRC, table())


@cache
def _edges(src: Path, rows: tuple[Row, ...]) -> dict[tuple[str, str], Row]:
    del src, rows  # cache keys: the tree and the table the graph is built from
    out: dict[tuple[str, str], Row] = {}
    for rel in modules():
        src_row = row_of(rel)
        assert src_row is not None, f"{rel} has no row in docs/architecture.md"
        for dep in dependencies(rel):
            dep_row = row_of(dep)
            assert dep_row is not None, f"{dep} has no row in docs/architecture.md"
            if dep_row.key != src_row.key:
                out[(rel, dep_row.key)] = src_row
    return out


def violations() -> set[tuple[str, str]]:
    """Imports that do not point strictly down the layers."""
    rows = {r.key: r for r in table()}
    return {(rel, dep) for (rel, dep), row in edges().items() if rows[dep].layer >= row.layer}


def test_table_parses_and_names_each_row_once():
    keys = [r.key for r in table()]
    assert len(keys) == len(set(keys))
    assert {r.layer for r in table()} >= {0, 1}
    for r in table():
        assert r.imports <= set(keys), f"{r.key} lists an import that is not a row"


def test_every_module_has_a_row_and_every_row_a_module():
    mods = modules()
    assert [m for m in mods if row_of(m) is None] == []
    assert [r.key for r in table() if not any(r.matches(m) for m in mods)] == []


def test_imports_point_down_the_layers():
    bad = violations() - set(KNOWN_VIOLATIONS)
    assert sorted(bad) == [], "imports at the same or a higher layer (see docs/architecture.md)"


@pytest.mark.parametrize(
    "pair",
    [pytest.param(pair, marks=pytest.mark.xfail(strict=True, reason=why), id="->".join(pair))
     for pair, why in KNOWN_VIOLATIONS.items()],
)
def test_known_violation_is_gone(pair):
    assert pair not in violations()


def test_imports_column_is_exact():
    rows = {r.key: r for r in table()}
    actual: dict[str, set[str]] = {k: set() for k in rows}
    for (rel, dep), row in edges().items():
        if rows[dep].layer > FOUNDATION_MAX_LAYER and (rel, dep) not in KNOWN_VIOLATIONS:
            actual[row.key].add(dep)
    wrong = {k: {"missing from the table": sorted(actual[k] - rows[k].imports),
                 "not imported": sorted(rows[k].imports - actual[k])}
             for k in rows if actual[k] != set(rows[k].imports)}
    assert wrong == {}


def test_library_never_imports_benchmarks_or_tests():
    offenders = sorted(
        (rel, name) for rel in modules() for name in imported_names(rel)
        if name.split(".")[0] in {"benchmarks", "tests"}
    )
    assert offenders == []


# The checker itself, on a table and modules made up here.

SAMPLE = """# x

## Layers

| layer | module | holds | imports |
|---|---|---|---|
| 0 | `errors.py` | errors | — |
| 2 | `book/` | data | `errors.py` |
| 3 | `models/params.py` | presets | — |

## Next
"""


def test_parse_table_reads_layers_keys_and_imports():
    rows = parse_table(SAMPLE)
    assert [(r.layer, r.key, sorted(r.imports)) for r in rows] == [
        (0, "errors.py", []), (2, "book/", ["errors.py"]), (3, "models/params.py", [])]
    assert rows[1].matches("book/positions.py")
    assert not rows[1].matches("bookish.py")
    assert rows[2].matches("models/params.py")
    assert not rows[2].matches("models/params_extra.py")


def test_resolve_follows_packages_and_stops_at_attributes():
    assert resolve("pmargin.models.params.load_params") == [
        "models/__init__.py", "models/params.py"]
    assert resolve("pmargin.book.Book") == ["book/__init__.py"]
    assert resolve("pmargin.errors.InvalidInput") == ["errors.py"]


def test_a_cycle_between_book_and_models_would_be_caught(monkeypatch, tmp_path):
    src = tmp_path / "pmargin"
    (src / "book").mkdir(parents=True)
    (src / "models").mkdir()
    for pkg in ("", "book/", "models/"):
        (src / f"{pkg}__init__.py").write_text("")
    (src / "errors.py").write_text("")
    (src / "book" / "positions.py").write_text("from pmargin.models.params import X\n")
    (src / "models" / "params.py").write_text("from pmargin.book import Book\n")
    doc = tmp_path / "architecture.md"
    doc.write_text(SAMPLE.replace(
        "| 3 | `models/params.py` | presets | — |",
        "| 3 | `models/params.py` | presets | `book/` |\n| 3 | `models/` | models | — |")
        .replace("| 0 | `errors.py`", "| 0 | `__init__.py` | root | — |\n| 0 | `errors.py`"))
    monkeypatch.setattr(sys.modules[__name__], "SRC", src)
    monkeypatch.setattr(sys.modules[__name__], "DOC", doc)
    table.cache_clear()
    try:
        assert violations() == {("book/positions.py", "models/params.py"),
                                ("book/positions.py", "models/")}
    finally:
        table.cache_clear()


def main() -> None:
    """Print what the table should say: each row's actual imports, and modules without a row.

    ``python -m tests.test_architecture`` after moving modules or adding imports.
    """
    rows = {r.key: r for r in table()}
    orphans = [m for m in modules() if row_of(m) is None]
    for m in orphans:
        deps = sorted({getattr(row_of(d), "key", d) for d in dependencies(m)})
        print(f"no row: {m} imports {', '.join(deps) or '—'}")
    if orphans:
        return
    actual: dict[str, set[str]] = {k: set() for k in rows}
    for (rel, dep), row in edges().items():
        if rows[dep].layer > FOUNDATION_MAX_LAYER and (rel, dep) not in KNOWN_VIOLATIONS:
            actual[row.key].add(dep)
    for key, row in rows.items():
        cell = ", ".join(f"`{d}`" for d in sorted(actual[key])) or "—"
        flag = "" if actual[key] == set(row.imports) else "   <- differs from the table"
        print(f"| {row.layer} | `{key}` | {cell}{flag}")
    for pair in sorted(violations()):
        print("violation:", " -> ".join(pair), "(known)" if pair in KNOWN_VIOLATIONS else "")


if __name__ == "__main__":
    main()
