"""Attestation leaves: one fixed-size record per account, encoded vectorised with NumPy.

Leaf format ``pmargin-leaf/1`` (100 bytes, big-endian integers; see docs/attestations.md):

====== ===== ===========================================================================
offset bytes field
====== ===== ===========================================================================
0      1     format version, ``0x01``
1      64    account id, ASCII, NUL-padded on the right (ids are 1 to 64 characters of
             ``[A-Za-z0-9_.-]``, so the padding is unambiguous)
65     10    margin currency code, ASCII, NUL-padded (``BTC``)
75     8     equity, signed 64-bit, in units of 1e-8 of the margin currency
83     8     initial margin, same unit
91     8     maintenance margin, same unit
99     1     health code: 0 healthy, 1 margin call, 2 liquidation, 3 bankrupt
             (:mod:`pmargin.models.health`, computed from the float figures)
====== ===== ===========================================================================

Fixed point: ``q = rint(fl(x * 1e8))``: the IEEE-754 binary64 product of the float figure and
``1e8`` (round to nearest, ties to even, as every IEEE machine computes it), then rounded to the
nearest integer with ties to even (``numpy.rint``; Python's ``round`` on the same float gives the
same integer). Figures whose fixed-point value does not fit comfortably in 63 bits
(``|x| > 9e10``) and non-finite figures are refused.

The leaf hash is ``SHA-256(0x00 || leaf)`` (RFC 6962 leaf prefix, :mod:`pmargin.attest.merkle`).
Leaves are sorted by account id (byte order of the ASCII id, i.e. Python's ``str`` order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pmargin._typing import FloatArray, IntArray
from pmargin.errors import InvalidInput
from pmargin.models.health import HEALTH_NAMES, classify

__all__ = [
    "LEAF_DTYPE",
    "LEAF_FORMAT",
    "LEAF_SIZE",
    "MAX_ABS",
    "SCALE",
    "Leaf",
    "LeafTable",
    "encode_leaves",
    "leaf_hashes",
    "to_fixed",
]

LEAF_FORMAT = "pmargin-leaf/1"
"""Name of the leaf format (in every attestation and proof)."""

LEAF_VERSION = 1
SCALE = 100_000_000
"""Fixed-point scale: one unit is 1e-8 of the margin currency."""

MAX_ABS = 9.0e10
"""Largest absolute figure (margin-currency units) a leaf accepts (9e18 units < 2**63)."""

ID_BYTES = 64
CCY_BYTES = 10

LEAF_DTYPE = np.dtype([
    ("version", "u1"), ("account", f"S{ID_BYTES}"), ("currency", f"S{CCY_BYTES}"),
    ("equity", ">i8"), ("initial_margin", ">i8"), ("maintenance_margin", ">i8"),
    ("health", "u1")])
"""One leaf as a packed NumPy record (100 bytes)."""

LEAF_SIZE = LEAF_DTYPE.itemsize

_HASHED_DTYPE = np.dtype([("prefix", "u1"), ("leaf", LEAF_DTYPE)])  # 0x00 || leaf


def to_fixed(x: FloatArray, field: str) -> IntArray:
    """Float figures to fixed-point integers of 1e-8 (``rint(fl(x * 1e8))``, ties to even).

    Parameters
    ----------
    x : ndarray of float64 of shape (n,)
        Figures in margin-currency units.
    field : str
        Name used in the error.

    Returns
    -------
    ndarray of int64 of shape (n,)
        Units of 1e-8.

    Raises
    ------
    InvalidInput
        A non-finite figure, or one beyond :data:`MAX_ABS`.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x) | (np.abs(x) > MAX_ABS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(field, float(x[i]), f"row {i}: must be finite and at most "
                           f"{MAX_ABS:g} in absolute value to be attested")
    return np.rint(x * float(SCALE)).astype(np.int64)


@dataclass(frozen=True)
class Leaf:
    """One account's leaf, decoded (the fields of a proof)."""

    account: str
    currency: str
    equity: int
    initial_margin: int
    maintenance_margin: int
    health: int

    def to_bytes(self) -> bytes:
        """The 100-byte leaf."""
        rec = np.zeros(1, dtype=LEAF_DTYPE)
        _check_ascii(self.account, ID_BYTES, "account")
        _check_ascii(self.currency, CCY_BYTES, "currency")
        if not 0 <= self.health < len(HEALTH_NAMES):
            raise InvalidInput("health", self.health, f"must be a code in [0, {len(HEALTH_NAMES)})")
        for name in ("equity", "initial_margin", "maintenance_margin"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or abs(v) >= 2**63:
                raise InvalidInput(name, v, "must be a 64-bit signed integer")
        rec[0] = (LEAF_VERSION, self.account.encode(), self.currency.encode(), self.equity,
                  self.initial_margin, self.maintenance_margin, self.health)
        return rec.tobytes()

    def hash(self) -> bytes:
        """``SHA-256(0x00 || leaf)``."""
        return hashlib.sha256(b"\x00" + self.to_bytes()).digest()

    def to_dict(self) -> dict[str, object]:
        """JSON form (integers in units of 1e-8, health as code and name)."""
        return {"account": self.account, "currency": self.currency, "equity": self.equity,
                "initial_margin": self.initial_margin,
                "maintenance_margin": self.maintenance_margin, "health": self.health,
                "health_name": HEALTH_NAMES[self.health]}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Leaf:
        """Read the JSON form (:class:`InvalidInput` naming a missing or mistyped field)."""
        out: dict[str, object] = {}
        for name, typ in (("account", str), ("currency", str), ("equity", int),
                          ("initial_margin", int), ("maintenance_margin", int),
                          ("health", int)):
            if name not in d:
                raise InvalidInput(f"leaf.{name}", None, "is missing")
            v = d[name]
            if not isinstance(v, typ) or isinstance(v, bool):
                raise InvalidInput(f"leaf.{name}", v, f"must be {typ.__name__}")
            out[name] = v
        return cls(**out)  # type: ignore[arg-type]


def _check_ascii(text: str, size: int, field: str) -> None:
    if not text or len(text) > size or not text.isascii() or "\x00" in text:
        raise InvalidInput(field, text, f"must be 1 to {size} ASCII characters without NUL")


@dataclass
class LeafTable:
    """The leaves of one epoch, sorted by account id.

    Attributes
    ----------
    records : ndarray of :data:`LEAF_DTYPE` of shape (n,)
        Leaves in Merkle order.
    """

    records: np.ndarray

    def position(self, account: str) -> int:
        """Index of ``account``'s leaf (binary search; :class:`KeyError` if it has none)."""
        ids = self.records["account"]
        try:
            key = account.encode("ascii")
        except UnicodeEncodeError:
            raise KeyError(account) from None
        i = int(np.searchsorted(ids, key))
        if i >= ids.shape[0] or bytes(ids[i]) != key:
            raise KeyError(account)
        return i

    def accounts(self) -> list[str]:
        """Account ids in leaf order."""
        return [bytes(a).decode("ascii") for a in self.records["account"]]

    def leaf(self, account: str) -> Leaf:
        """The decoded leaf of ``account`` (:class:`KeyError` if it has none)."""
        r = self.records[self.position(account)]
        return Leaf(account, bytes(r["currency"]).decode(), int(r["equity"]),
                    int(r["initial_margin"]), int(r["maintenance_margin"]), int(r["health"]))

    def __len__(self) -> int:
        return int(self.records.shape[0])


def _id_bytes(accounts: Sequence[str] | np.ndarray) -> tuple[np.ndarray, int]:
    """Account ids as NUL-padded ``S64`` (checked: 1-64 ASCII characters); the longest length."""
    u = np.asarray(accounts, dtype=str)
    if u.shape[0] == 0:
        return np.zeros(0, dtype=f"S{ID_BYTES}"), 0
    lens = np.char.str_len(u)
    bad = (lens < 1) | (lens > ID_BYTES)
    if bad.any():
        raise InvalidInput("account", str(u[int(np.flatnonzero(bad)[0])]),
                           f"must be 1 to {ID_BYTES} characters")
    width = u.dtype.itemsize // 4
    codes = u.view(np.uint32).reshape(u.shape[0], width)  # UCS-4 code points, NUL-padded
    non_ascii = (codes > 127).any(axis=1)
    if non_ascii.any():
        raise InvalidInput("account", str(u[int(np.flatnonzero(non_ascii)[0])]),
                           "must be ASCII")
    out = np.zeros((u.shape[0], ID_BYTES), dtype=np.uint8)
    out[:, :width] = codes
    return out.view(f"S{ID_BYTES}").reshape(u.shape[0]), int(lens.max())


def _sort_order(ids: np.ndarray, longest: int) -> np.ndarray:
    """Stable order of ``S64`` ids by their bytes: a lexsort of the 8-byte words they use."""
    if ids.shape[0] < 2:
        return np.arange(ids.shape[0])
    words = ids.view(">u8").reshape(ids.shape[0], ID_BYTES // 8)[:, :max(1, -(-longest // 8))]
    return np.lexsort(words.T[::-1])


def encode_leaves(accounts: Sequence[str] | np.ndarray,
                  currencies: Sequence[str] | np.ndarray, equity: FloatArray,
                  initial_margin: FloatArray, maintenance_margin: FloatArray) -> LeafTable:
    """Encode every account's leaf (vectorised) and sort them by account id.

    Parameters
    ----------
    accounts : sequence of str of length n
        Account ids (unique).
    currencies : sequence of str, or ndarray of ``S10``, of length n
        Margin currency of each account's book.
    equity, initial_margin, maintenance_margin : ndarray of float64 of shape (n,)
        The engine's figures in margin-currency units.

    Returns
    -------
    LeafTable
        Sorted leaves.

    Raises
    ------
    InvalidInput
        Non-finite or oversized figures, ids that are not 1-64 ASCII characters, duplicates.
    """
    id_bytes, longest = _id_bytes(accounts)
    n = id_bytes.shape[0]
    eq = np.asarray(equity, dtype=np.float64)
    im = np.asarray(initial_margin, dtype=np.float64)
    mm = np.asarray(maintenance_margin, dtype=np.float64)
    for name, arr in (("equity", eq), ("initial_margin", im), ("maintenance_margin", mm)):
        if arr.shape != (n,):
            raise InvalidInput(name, arr.shape, f"must have shape ({n},)")
    ccy = np.asarray(currencies)
    if ccy.dtype.kind == "U":
        ccy = ccy.astype(f"S{CCY_BYTES}")
    if ccy.shape != (n,):
        raise InvalidInput("currency", ccy.shape, f"must have shape ({n},)")
    codes = classify(eq, im, mm) if n else np.zeros(0, dtype=np.int64)
    rec = np.empty(n, dtype=LEAF_DTYPE)
    rec["version"] = LEAF_VERSION
    rec["account"] = id_bytes
    rec["currency"] = ccy
    rec["equity"] = to_fixed(eq, "equity")
    rec["initial_margin"] = to_fixed(im, "initial_margin")
    rec["maintenance_margin"] = to_fixed(mm, "maintenance_margin")
    rec["health"] = codes
    rec = rec[_sort_order(id_bytes, longest)]
    if n > 1:
        dup = rec["account"][1:] == rec["account"][:-1]
        if dup.any():
            raise InvalidInput("account", bytes(rec["account"][int(np.flatnonzero(dup)[0])]
                                                ).decode(), "appears twice")
    return LeafTable(rec)


def leaf_hashes(records: np.ndarray) -> bytes:
    """``SHA-256(0x00 || leaf)`` of every record, concatenated (32 bytes each).

    The prefixed records are laid out in one buffer by NumPy; the per-leaf ``hashlib`` call is
    the remaining cost (docs/benchmarks.md, "Attestations").
    """
    buf = np.zeros(records.shape[0], dtype=_HASHED_DTYPE)
    buf["leaf"] = records
    raw = buf.tobytes()
    step = _HASHED_DTYPE.itemsize
    sha = hashlib.sha256
    mv = memoryview(raw)
    return b"".join([sha(mv[i:i + step]).digest() for i in range(0, len(raw), step)])
