"""The dashboard's pages: HTML rendered on the server around static JavaScript and CSS.

Pages live under ``/ui/`` (overview, account, calculator, attestations); their scripts and
stylesheet are files of ``pmargin/service/web/`` served at ``/ui/static/``. Nothing is fetched
from elsewhere and nothing is built: the pages read the JSON API with the key the user enters
once (kept in the tab's ``sessionStorage``). See ``docs/dashboard.md``.
"""


import html
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from pathlib import Path
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["PAGES", "WEB_DIR", "add_web_routes", "render_page"]

WEB_DIR = Path(str(files("pmargin.service").joinpath("web")))
"""Folder of the page bodies, scripts and stylesheet."""

PAGES: dict[str, str] = {
    "overview": "Book overview",
    "account": "Account",
    "calculator": "Margin calculator",
    "attestations": "Attestations",
}
"""Page name -> title (each page has ``web/<name>.html`` and ``web/<name>.js``)."""

# the pages send no request anywhere but this service, and run no inline script
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@cache
def _read(name: str) -> str:
    return (WEB_DIR / name).read_text(encoding="utf-8")


def render_page(page: str, stream: bool = False) -> str:
    """The HTML of one page: the layout with the page's body and script.

    Parameters
    ----------
    page : str
        A key of :data:`PAGES`.
    stream : bool
        Whether the service has the WebSocket stream ``/v1/stream`` (the overview then
        listens to it instead of polling).

    Returns
    -------
    str
        A complete HTML document.
    """
    current = ' aria-current="page"'
    nav = "\n".join(
        f'<a href="/ui/{name}"{current if name == page else ""}>{html.escape(title)}</a>'
        for name, title in PAGES.items())
    return Template(_read("layout.html")).substitute(
        title=html.escape(PAGES[page]), page=page, nav=nav, body=_read(f"{page}.html"),
        stream="1" if stream else "0")


def add_web_routes(app: FastAPI) -> None:
    """Serve the pages at ``/ui/<page>`` and their files at ``/ui/static/`` (not in OpenAPI)."""
    app.mount("/ui/static", StaticFiles(directory=WEB_DIR), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/overview")

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/overview")

    def has_stream() -> bool:
        return any(getattr(r, "path", None) == "/v1/stream" for r in app.router.routes)

    def handler(name: str) -> Callable[[], HTMLResponse]:
        def page() -> HTMLResponse:
            return HTMLResponse(render_page(name, has_stream()), headers={
                "Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})
        return page

    for name in PAGES:
        app.add_api_route(f"/ui/{name}", handler(name), methods=["GET"],
                          include_in_schema=False, response_class=HTMLResponse)
