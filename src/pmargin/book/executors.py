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
    results are gathered in chunk order.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def map_chunks(self, fn: Callable[[Any, Any], Any], shared: Any,
                   chunks: Sequence[Any]) -> list[Any]:
        """Apply ``fn(shared, chunk)`` to every chunk on the cluster, preserving order."""
        shared_f = self.client.scatter(shared, broadcast=True)
        chunk_fs = self.client.scatter(list(chunks))
        futures = [self.client.submit(fn, shared_f, c, pure=False) for c in chunk_fs]
        return list(self.client.gather(futures))
