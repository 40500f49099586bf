"""What a third party needs to recompute an epoch: market, parameters, book state; digests.

The inputs document (``pmargin-attest-inputs/1``, served by
``GET /v1/attestations/{epoch}/inputs``) holds the market as the service stored it, and per
book the model preset and its parameter digest, the engine's instrument columns in their order,
the accounts in the engine's row order with their positions and balances as exact decimal
strings. :func:`book_from_inputs` turns one book into the very :class:`~pmargin.book.Book` the
service's engine held (same rows, same columns, same floats), so the margins come out bit for
bit (docs/attestations.md, "Determinism").
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tempfile
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot

__all__ = [
    "INPUTS_FORMAT",
    "LOG_GENESIS",
    "book_from_inputs",
    "engine_info",
    "log_step",
    "market_digest",
    "market_from_stored",
]

INPUTS_FORMAT = "pmargin-attest-inputs/1"
LOG_GENESIS = "00" * 32
"""Log hash before the first event."""
_LOG_DOMAIN = b"pmargin-log/1\x00"


def market_from_stored(payload: Mapping[str, Any]) -> MarketSnapshot:
    """A market snapshot from its stored form (JSON market or gzipped Deribit CSV in base64)."""
    from pmargin.market.loaders import load_deribit_csv, load_market_json

    fmt = payload.get("format")
    if fmt == "deribit-csv":
        try:
            raw = base64.b64decode(payload["gzip_b64"], validate=True)
        except (KeyError, ValueError) as exc:
            raise InvalidInput("market.gzip_b64", None, f"missing or not base64 ({exc})"
                               ) from None
        if raw[:2] != b"\x1f\x8b":
            raw = gzip.compress(raw, mtime=0)
        with tempfile.NamedTemporaryFile(suffix=".csv.gz") as f:
            f.write(raw)
            f.flush()
            return load_deribit_csv(f.name)
    if fmt == "json":
        if "market" not in payload:
            raise InvalidInput("market.market", None, "is missing")
        return load_market_json(payload["market"])
    raise InvalidInput("market.format", fmt, "must be 'json' or 'deribit-csv'")


def market_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the stored market as the service digests it (sorted-key JSON)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def log_step(prev_hex: str, seq: int, book: str, kind: str, payload: Any,
             created_at: str) -> str:
    r"""Next link of the event-log hash chain.

    ``h_seq = SHA-256(b"pmargin-log/1\x00" || h_prev || canonical JSON of
    [seq, book, kind, payload, created_at])`` with ``h_0`` = 32 zero bytes; the JSON as in
    :func:`pmargin.attest.signing.canonical` (sorted keys, no whitespace, ASCII), ``payload``
    the event's JSON object as ``GET /v1/events`` returns it.
    """
    body = json.dumps([seq, book, kind, payload, created_at], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(_LOG_DOMAIN + bytes.fromhex(prev_hex) + body.encode()).hexdigest()


def engine_info() -> dict[str, str]:
    """Engine identity in an attestation: package version and which kernels ran."""
    from pmargin import __version__
    from pmargin._numba import NUMBA_ENABLED

    return {"name": "pmargin", "version": str(__version__),
            "kernels": "numba" if NUMBA_ENABLED else "numpy"}


def _dec(v: Any, field: str) -> Decimal:
    if not isinstance(v, str):
        raise InvalidInput(field, v, "must be a decimal string")
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise InvalidInput(field, v, "is not a decimal number") from None
    if not d.is_finite():
        raise InvalidInput(field, v, "must be finite")
    return d


def book_from_inputs(book: Mapping[str, Any], where: str = "books[0]") -> Book:
    """The engine's :class:`Book` of one book of an inputs document.

    Positions become floats exactly as the service feeds its engine: quantity
    ``float(Decimal)``, entry notional ``float(Decimal)`` for futures and perpetuals and NaN for
    options (valued at the mark); balances ``float(Decimal)``; each row's entries in column
    order.

    Raises
    ------
    InvalidInput
        A missing or malformed field, an instrument not among the columns, a duplicate.
    """
    for k in ("margin_currency", "collateral_currencies", "instruments", "accounts"):
        if k not in book:
            raise InvalidInput(f"{where}.{k}", None, "is missing")
    names = list(book["instruments"])
    col = {n: j for j, n in enumerate(names)}
    if len(col) != len(names):
        raise InvalidInput(f"{where}.instruments", names, "has duplicates")
    insts = [parse_instrument(n) for n in names]
    ccys = list(book["collateral_currencies"])
    accounts = book["accounts"]
    ids: list[str] = []
    indptr = [0]
    cols: list[int] = []
    qs: list[float] = []
    es: list[float] = []
    coll = np.zeros((len(accounts), len(ccys)))
    for r, a in enumerate(accounts):
        w = f"{where}.accounts[{r}]"
        if not isinstance(a, Mapping) or not isinstance(a.get("id"), str):
            raise InvalidInput(f"{w}.id", a.get("id") if isinstance(a, Mapping) else a,
                               "each account needs a string id")
        ids.append(a["id"])
        row: list[tuple[int, float, float]] = []
        for i, p in enumerate(a.get("positions", [])):
            if not isinstance(p, list | tuple) or len(p) != 3:
                raise InvalidInput(f"{w}.positions[{i}]", p,
                                   "must be [instrument, quantity, entry_notional]")
            name = p[0]
            if name not in col:
                raise InvalidInput(f"{w}.positions[{i}]", name, "is not among the instruments")
            q = float(_dec(p[1], f"{w}.positions[{i}].quantity"))
            ed = _dec(p[2], f"{w}.positions[{i}].entry_notional")
            row.append((col[name], q, float("nan") if insts[col[name]].is_option else float(ed)))
        row.sort(key=lambda t: t[0])
        if len({t[0] for t in row}) != len(row):
            raise InvalidInput(f"{w}.positions", a["id"], "lists an instrument twice")
        for j, qf, ef in row:
            cols.append(j)
            qs.append(qf)
            es.append(ef)
        indptr.append(len(cols))
        bal = a.get("balances", {})
        if not isinstance(bal, Mapping):
            raise InvalidInput(f"{w}.balances", bal, "must be an object")
        for c, v in bal.items():
            if c not in ccys:
                raise InvalidInput(f"{w}.balances", c, f"is not a collateral currency {ccys}")
            coll[r, ccys.index(c)] = float(_dec(v, f"{w}.balances.{c}"))
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"{where}.accounts", "ids", "account ids must be unique")
    shape = (len(ids), len(names))
    ptr = np.asarray(indptr, dtype=np.int64)
    idx = np.asarray(cols, dtype=np.int64)
    pos = sp.csr_matrix((np.asarray(qs, dtype=np.float64), idx, ptr), shape=shape)
    ent = sp.csr_matrix((np.asarray(es, dtype=np.float64), idx.copy(), ptr.copy()), shape=shape)
    return Book(str(book["margin_currency"]), ids, insts, pos, ent, ccys, coll)
