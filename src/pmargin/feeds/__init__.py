"""Market feeds: the feed interface, oracle guards and the history replay (issue 11).

Layer above ``market/`` (and the history builder in ``analytics/``), below ``service/`` and
``cli.py``: the service runs every market it is given through :mod:`pmargin.feeds.guards`;
``pmargin replay`` plays history into a running service over HTTP.
"""

from __future__ import annotations

__all__: list[str] = []
