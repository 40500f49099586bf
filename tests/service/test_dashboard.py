"""The dashboard's pages as rendered by the server, and its static files (no browser here)."""

from __future__ import annotations

import re

import pytest

from pmargin.service.dashboard import PAGES, WEB_DIR, render_page


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_with_its_script_and_navigation(page: str) -> None:
    html = render_page(page)
    assert html.startswith("<!doctype html>")
    assert f'<script src="/ui/static/{page}.js"></script>' in html
    assert (WEB_DIR / f"{page}.js").is_file()
    assert f'<a href="/ui/{page}" aria-current="page">' in html
    for other in PAGES:
        assert f'href="/ui/{other}"' in html
    assert "$" not in html.split("<main", 1)[1].split("<script", 1)[0]  # every slot filled
    assert 'name="viewport"' in html  # narrow screens


def test_nothing_is_fetched_from_elsewhere() -> None:
    """No CDN, no external font or script: every URL is the service's own (or the SVG name)."""
    for f in WEB_DIR.iterdir():
        text = f.read_text(encoding="utf-8")
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (f.name, urls)
        assert "<script>" not in text, f.name  # CSP: no inline code
        assert " style=" not in text, f.name


def test_the_key_is_kept_for_the_session_only() -> None:
    js = (WEB_DIR / "common.js").read_text(encoding="utf-8")
    assert "sessionStorage" in js
    assert "localStorage" not in js
    for f in WEB_DIR.glob("*.js"):
        assert "localStorage" not in f.read_text(encoding="utf-8"), f.name


@pytest.mark.parametrize("script", sorted(p.name for p in WEB_DIR.glob("*.js")))
def test_every_script_parses(script: str) -> None:
    """A syntax error would only show in a browser: ``node --check`` when node is installed."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the browser tests still load every script)")
    r = subprocess.run([node, "--check", str(WEB_DIR / script)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
