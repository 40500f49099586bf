"""Merkle tree over the leaf hashes (SHA-256, domain-separated, RFC 6962 shape).

* leaf hash: ``SHA-256(0x00 || leaf)`` (:func:`pmargin.attest.leaves.leaf_hashes`);
* node hash: ``SHA-256(0x01 || left || right)``;
* levels are built pairwise from the left; an odd node at the end of a level is **promoted**
  unchanged to the next level (never duplicated, so no two leaf lists share a root by
  repeating the last leaf). This is the Merkle Tree Hash of RFC 6962 section 2.1 (the split at
  the largest power of two below ``n`` gives the same tree);
* the root of zero leaves is ``SHA-256(b"")``.

An inclusion proof is the list of sibling hashes from the leaf up; which side each sibling is
on, and at which levels a node is promoted without a sibling, follows from the leaf's index and
the leaf count, so :func:`verify_inclusion` recomputes the shape and checks it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from pmargin.errors import InvalidInput

__all__ = ["MerkleTree", "build_tree", "node_level", "proof_shape", "verify_inclusion"]

HASH = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def node_level(level: bytes) -> bytes:
    """The next level up: ``SHA-256(0x01 || left || right)`` per pair, an odd last promoted."""
    n = len(level) // HASH
    m = n // 2
    if m == 0:
        return level
    pairs = np.frombuffer(level, dtype=np.uint8, count=m * 2 * HASH).reshape(m, 2 * HASH)
    buf = np.empty((m, 2 * HASH + 1), dtype=np.uint8)
    buf[:, 0] = 1
    buf[:, 1:] = pairs
    raw = buf.tobytes()
    step = 2 * HASH + 1
    sha = hashlib.sha256
    mv = memoryview(raw)
    out = b"".join([sha(mv[i:i + step]).digest() for i in range(0, len(raw), step)])
    return out + level[m * 2 * HASH:] if n % 2 else out


def _levels(leaf_hashes: bytes) -> list[bytes]:
    levels = [leaf_hashes]
    while len(levels[-1]) > HASH:
        levels.append(node_level(levels[-1]))
    return levels


def _hash_and_levels(records: np.ndarray) -> list[bytes]:
    from pmargin.attest.leaves import leaf_hashes

    return _levels(leaf_hashes(records))


@dataclass
class MerkleTree:
    """Every level of the tree (level 0: the leaf hashes), 32 bytes per node."""

    levels: list[bytes]

    @property
    def count(self) -> int:
        """Number of leaves."""
        return len(self.levels[0]) // HASH

    @property
    def root(self) -> bytes:
        """The Merkle root (``SHA-256(b"")`` for no leaves)."""
        return self.levels[-1][:HASH] if self.count else EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        """Hash of leaf ``index``."""
        return self.levels[0][index * HASH:(index + 1) * HASH]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from leaf ``index`` to the root (promoted levels have none)."""
        if not 0 <= index < self.count:
            raise InvalidInput("index", index, f"must lie in [0, {self.count})")
        out = []
        i = index
        for level in self.levels[:-1]:
            n = len(level) // HASH
            sib = i ^ 1
            if sib < n:
                out.append(level[sib * HASH:(sib + 1) * HASH])
            i //= 2
        return out


def build_tree(records: np.ndarray, workers: int = 1, parallel_min: int = 200_000
               ) -> MerkleTree:
    """Leaf hashes and every level of the tree over ``records`` (sorted leaves).

    Parameters
    ----------
    records : ndarray of ``LEAF_DTYPE`` of shape (n,)
        Leaves in Merkle order.
    workers : int, optional
        With 2 or more and at least ``parallel_min`` leaves, the left subtree (the first
        ``2**k`` leaves, ``2**k`` the largest power of two below ``n``) is hashed in a forked
        process while this one hashes the rest; the levels are then joined (same tree).
    parallel_min : int, optional
        Smallest leaf count for the parallel path.

    Returns
    -------
    MerkleTree
        The tree.
    """
    n = int(records.shape[0])
    if n == 0:
        return MerkleTree([b""])
    if workers < 2 or n < max(parallel_min, 2) or "fork" not in _methods():
        return MerkleTree(_hash_and_levels(records))
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        fut = pool.submit(_hash_and_levels, records[:k])
        right = _hash_and_levels(records[k:])
        left = fut.result()
    levels = []
    for j, lv in enumerate(left):  # left is perfect: len(left) == log2(k) + 1
        levels.append(lv + right[min(j, len(right) - 1)])
    while len(levels[-1]) > HASH:
        levels.append(node_level(levels[-1]))
    return MerkleTree(levels)


def _methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods() if os.name == "posix" else []


def proof_shape(index: int, count: int) -> list[str]:
    """Side of each sibling on the path of leaf ``index`` of ``count``: ``left``/``right``."""
    if count < 1 or not 0 <= index < count:
        raise InvalidInput("index", index, f"must lie in [0, {count}) (count {count})")
    sides = []
    i, n = index, count
    while n > 1:
        sib = i ^ 1
        if sib < n:
            sides.append("left" if sib < i else "right")
        i //= 2
        n = (n + 1) // 2
    return sides


def verify_inclusion(leaf_hash: bytes, index: int, count: int, path: Sequence[bytes],
                     root: bytes) -> bool:
    """True when ``path`` proves leaf ``index`` of ``count`` (with ``leaf_hash``) under ``root``.

    The path must have exactly the length the tree's shape implies.
    """
    sides = proof_shape(index, count)
    if len(path) != len(sides) or any(len(p) != HASH for p in path):
        return False
    h = leaf_hash
    sha = hashlib.sha256
    for side, sib in zip(sides, path, strict=True):
        h = sha(b"\x01" + sib + h).digest() if side == "left" else sha(b"\x01" + h + sib).digest()
    return h == root
