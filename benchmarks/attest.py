"""Attestation of one epoch of N accounts (leaves, Merkle tree, signature) and proof checks.

``python benchmarks/attest.py [--accounts 1000000] [--repeat 3]`` prints one JSON object. The
margins are random figures (the engine is not timed here: ``bench_book.py`` times it); what is
timed is what the service adds per epoch once the margins exist:

* *encode*: fixed-point conversion, health codes, the packed records, the sort by account id
  (``pmargin.attest.leaves.encode_leaves``, vectorised);
* *tree*: ``SHA-256(0x00||leaf)`` per leaf and every node level (``build_tree``), with one
  process and with two (the left subtree in a forked process);
* *sign*: Ed25519 over the canonical body;
* *floor*: the same number of bare ``hashlib.sha256(...).digest()`` calls on the same buffers
  (leaves + nodes), in one process: the per-hash Python call the tree cannot avoid;
* *proof verify*: ``verify_inclusion`` of 2,000 random leaves (mean and p99 per proof).

All figures of one run come from this process, measured side by side (medians of ``--repeat``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CPU: dict[str, float] = {}


def _median(f, repeat: int, name: str = "") -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Median wall time of ``repeat`` calls (the CPU time of this process kept in CPU[name])."""
    times, cpus, out = [], [], None
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    if name:
        CPU[name] = statistics.median(cpus)
    return statistics.median(times), out


def main() -> None:
    """Run and print the JSON row."""
    from pmargin.attest.epoch import BookMargins, attestation_body, sign_attestation
    from pmargin.attest.leaves import encode_leaves
    from pmargin.attest.merkle import build_tree, verify_inclusion
    from pmargin.attest.signing import load_or_create_key, public_key_hex

    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n = a.accounts
    rng = np.random.default_rng(11)
    ids = [f"acc{i:07d}" for i in rng.permutation(n)]
    eq = rng.lognormal(0, 2, n)
    im = eq * rng.uniform(0.05, 1.5, n)
    mm = im * 0.8
    ccy = np.repeat(np.array([b"BTC"], dtype="S10"), n)  # as the service passes it

    t_enc, table = _median(lambda: encode_leaves(ids, ccy, eq, im, mm), a.repeat, "encode")
    rec = table.records  # type: ignore[attr-defined]
    t_tree1, tree = _median(lambda: build_tree(rec, workers=1), a.repeat, "tree_1proc")
    t_tree2, tree2 = _median(lambda: build_tree(rec, workers=2), a.repeat)
    assert tree2.levels == tree.levels  # type: ignore[attr-defined]

    # floor: bare hashlib calls on the same buffers (leaf records, then node pairs)
    prefixed = np.zeros(n, dtype=[("p", "u1"), ("leaf", rec.dtype)])
    prefixed["leaf"] = rec
    leaf_buf = prefixed.tobytes()
    node_bufs = []
    for lv in tree.levels[:-1]:  # type: ignore[attr-defined]
        m = len(lv) // 64
        b = np.empty((m, 65), np.uint8)
        b[:, 0] = 1
        b[:, 1:] = np.frombuffer(lv, np.uint8, count=m * 64).reshape(m, 64)
        node_bufs.append(b.tobytes())

    def floor() -> None:
        sha = hashlib.sha256
        mv = memoryview(leaf_buf)
        [sha(mv[i:i + 101]).digest() for i in range(0, len(leaf_buf), 101)]
        for nb in node_bufs:
            mv = memoryview(nb)
            [sha(mv[i:i + 65]).digest() for i in range(0, len(nb), 65)]

    t_floor, _ = _median(floor, a.repeat, "floor")

    with tempfile.TemporaryDirectory() as tmp:
        key = load_or_create_key(Path(tmp) / "k.pem")
    bm = BookMargins("BTC", "BTC", "deribit-pm", "0" * 64, ids, eq, im, mm)

    def sign() -> object:
        body = attestation_body(epoch=1, seq=n, log_hash="0" * 64, market_digest="0" * 64,
                                valuation_time="2026-11-30T00:00:00+00:00", books=[bm],
                                tree=tree, engine={"name": "pmargin"},  # type: ignore[arg-type]
                                created_at="2026-11-30T00:00:00+00:00",
                                public_hex=public_key_hex(key))
        return sign_attestation(key, body)

    t_sign, _ = _median(sign, a.repeat, "sign")

    idx = rng.integers(0, n, 2000)
    per = []
    root = tree.root  # type: ignore[attr-defined]
    for i in idx:
        i = int(i)
        lh = tree.leaf_hash(i)  # type: ignore[attr-defined]
        path = tree.proof(i)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        ok = verify_inclusion(lh, i, n, path, root)
        per.append(time.perf_counter() - t0)
        assert ok
    per_us = np.array(per) * 1e6
    row = {
        "accounts": n, "repeat": a.repeat,
        "encode_s": t_enc, "tree_1proc_s": t_tree1, "tree_2proc_s": t_tree2,
        "hashlib_floor_s": t_floor, "sign_s": t_sign,
        "total_1proc_s": t_enc + t_tree1 + t_sign, "total_2proc_s": t_enc + t_tree2 + t_sign,
        "tree_1proc_to_floor": t_tree1 / t_floor,
        "proof_verify_mean_us": float(per_us.mean()),
        "proof_verify_p99_us": float(np.percentile(per_us, 99)),
        "proof_hashes": len(tree.proof(0)),  # type: ignore[attr-defined]
        "cpu_s": CPU, "load_average": os.getloadavg()[0], "cores": os.cpu_count(),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
