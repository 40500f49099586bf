"""Executors: run a model's evaluation over account chunks, locally or on a Dask cluster.

Models are account-separable (an account's margin depends only on its own rows), so a book is
partitioned by accounts; the prepared market state (risk arrays) is shared by every chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["DaskExecutor", "Executor", "LocalExecutor"]


class Executor(Protocol):
    """Runs ``fn(shared, chunk)`` for every chunk and returns the results in order."""

    def map_chunks(self, fn: Callable[[Any, Any], Any], shared: Any,
                   chunks: Sequence[Any]) -> list[Any]:
        """Apply ``fn(shared, chunk)`` to every chunk, preserving order."""
        ...


class LocalExecutor:
    """In-process, sequential executor (the default)."""

    def map_chunks(self, fn: Callable[[Any, Any], Any], shared: Any,
                   chunks: Sequence[Any]) -> list[Any]:
        """Apply ``fn(shared, chunk)`` to every chunk in this process."""
        return [fn(shared, c) for c in chunks]


class DaskExecutor:
    """Executor on a ``dask.distributed`` cluster (optional extra ``pmargin[dask]``).

    Parameters
    ----------
    client : distributed.Client
        A connected client: ``Client(LocalCluster(...))`` for tests, or
        ``Client("tcp://scheduler-host:8786")`` for a real cluster whose workers have pmargin
        installed (same version: the prepared risk arrays are pickled to them).

    Notes
    -----
    The prepared state is scattered once (broadcast) per call and every chunk becomes one task;
    results are gathered in chunk order. Chunks stay resident on the workers: a chunk object
    already sent is not sent again (the book engine keeps its chunk objects until the book
    changes), so a market tick moves only the prepared risk arrays over the network.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._resident: dict[int, tuple[Any, Any]] = {}

    def _futures(self, chunks: Sequence[Any]) -> list[Any]:
        live = {id(c) for c in chunks}
        for key in [k for k in self._resident if k not in live]:
            del self._resident[key]  # chunks of an older layout: let the workers drop them
        missing = [c for c in chunks if id(c) not in self._resident]
        if missing:
            for c, f in zip(missing, self.client.scatter(missing, hash=False), strict=True):
                self._resident[id(c)] = (c, f)
        return [self._resident[id(c)][1] for c in chunks]

    def map_chunks(self, fn: Callable[[Any, Any], Any], shared: Any,
                   chunks: Sequence[Any]) -> list[Any]:
        """Apply ``fn(shared, chunk)`` to every chunk on the cluster, preserving order."""
        shared_f = self.client.scatter(shared, broadcast=True, hash=False)
        futures = [self.client.submit(fn, shared_f, c, pure=False)
                   for c in self._futures(chunks)]
        return list(self.client.gather(futures))
