"""Venue files for the enforcement and stream tests: the shipped venue with some keys changed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "pmargin" / "service" / "venue.toml"


def venue_file(tmp: Path, **changes: Any) -> Path:
    """Write the shipped venue with ``key = value`` lines replaced (TOML literals)."""
    text = SHIPPED.read_text()
    for k, v in changes.items():
        lit = ("true" if v else "false") if isinstance(v, bool) else (
            f'"{v}"' if isinstance(v, str) else repr(v))
        text, n = re.subn(rf"(?m)^{k} = .*$", f"{k} = {lit}", text)
        assert n == 1, k
    p = tmp / f"venue-{abs(hash(tuple(sorted(changes.items()))))}.toml"
    p.write_text(text)
    return p
