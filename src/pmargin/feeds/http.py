"""The HTTP feed: each ``POST /v1/market`` body as a :class:`~pmargin.feeds.base.MarketUpdate`.

The service's endpoint hands the raw body, its content type and the sender's source id to
:meth:`HttpFeed.receive`; the update then goes through the same guards as any other feed
(:class:`pmargin.feeds.guards.OracleGuard`) before the service applies it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator

from pmargin.errors import InvalidInput
from pmargin.feeds.base import Feed, MarketUpdate, make_update, payload_from_csv

__all__ = ["HttpFeed"]


class HttpFeed(Feed):
    """Push feed of the service: one update per request body.

    Parameters
    ----------
    source : str, optional
        Default source id of its updates (a request may name its own).
    keep : int, optional
        How many received updates :meth:`updates` can still yield (the most recent).
    """

    def __init__(self, source: str = "http", keep: int = 8) -> None:
        self.source = source
        self._recent: deque[MarketUpdate] = deque(maxlen=keep)

    def receive(self, raw: bytes, content_type: str, source: str | None = None
                ) -> MarketUpdate:
        """Turn a request body into an update (prices checked, market parsed, digest).

        Parameters
        ----------
        raw : bytes
            The body: a JSON market block, or a Deribit CSV chain (gzipped or not) when
            ``content_type`` says ``csv``.
        content_type : str
            The request's ``Content-Type``.
        source : str, optional
            Source id of the sender (default: the feed's).

        Returns
        -------
        MarketUpdate
            The parsed update.

        Raises
        ------
        InvalidInput
            Field ``body`` for a body that is not JSON; the field of a bad price; the
            loader's field for a market that does not load.
        """
        if "csv" in content_type:
            stored = payload_from_csv(raw)
        else:
            try:
                block = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("body", raw[:40].decode("utf-8", "replace"),
                                   "is not JSON") from None
            stored = {"format": "json", "market": block}
        upd = make_update(stored, source or self.source)
        self._recent.append(upd)
        return upd

    def updates(self) -> Iterator[MarketUpdate]:
        """The updates received so far (the most recent ``keep``), oldest first."""
        yield from list(self._recent)
