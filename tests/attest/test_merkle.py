"""The Merkle tree against an independent recursive RFC 6962 Merkle Tree Hash; proofs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pmargin.attest.leaves import encode_leaves, leaf_hashes
from pmargin.attest.merkle import EMPTY_ROOT, build_tree, proof_shape, verify_inclusion


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written from the RFC: split at the largest power of two < n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _table(n: int) -> np.ndarray:
    ids = [f"acc{i:05d}" for i in range(n)]
    x = np.arange(n, dtype=np.float64)
    return encode_leaves(ids, ["BTC"] * n, x + 1, x * 0.1, x * 0.05).records


@pytest.mark.parametrize("n", [*range(1, 34), 100, 257])
def test_root_is_rfc6962(n: int) -> None:
    rec = _table(n)
    leaves = [rec[i:i + 1].tobytes() for i in range(n)]
    assert build_tree(rec).root == _mth(leaves)


def test_empty_tree() -> None:
    assert build_tree(_table(0)).root == EMPTY_ROOT == _mth([])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 33])
def test_every_proof_verifies_and_tampering_fails(n: int) -> None:
    rec = _table(n)
    tree = build_tree(rec)
    hashes = leaf_hashes(rec)
    for i in range(n):
        lh = hashes[32 * i:32 * (i + 1)]
        path = tree.proof(i)
        assert len(path) == len(proof_shape(i, n))
        assert verify_inclusion(lh, i, n, path, tree.root)
        bad_leaf = bytes([lh[0] ^ 1]) + lh[1:]
        assert not verify_inclusion(bad_leaf, i, n, path, tree.root)
        bad_root = bytes([tree.root[0] ^ 1]) + tree.root[1:]
        assert not verify_inclusion(lh, i, n, path, bad_root)
        if path:
            assert not verify_inclusion(lh, i, n, path[:-1], tree.root)
            p2 = list(path)
            p2[0] = bytes([p2[0][0] ^ 1]) + p2[0][1:]
            assert not verify_inclusion(lh, i, n, p2, tree.root)
        if n > 1:  # the same path claimed for another index
            j = (i + 1) % n
            assert not verify_inclusion(lh, j, n, path, tree.root) or \
                hashes[32 * j:32 * (j + 1)] == lh


def test_promoted_node_shape() -> None:
    # 3 leaves: leaf 2 has no sibling at the bottom level, then sits right of node(0,1)
    assert proof_shape(2, 3) == ["left"]
    assert proof_shape(0, 3) == ["right", "right"]
    assert proof_shape(4, 5) == ["left"]


@pytest.mark.parametrize("n", [2, 3, 1000, 1025, 4097])
def test_parallel_build_equals_serial(n: int) -> None:
    rec = _table(n)
    serial = build_tree(rec)
    par = build_tree(rec, workers=2, parallel_min=2)
    assert par.levels == serial.levels
