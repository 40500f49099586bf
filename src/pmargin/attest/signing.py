r"""Ed25519 signatures over the canonical encoding of an attestation (``cryptography``).

Signed message: ``b"pmargin-attestation/1\x00"`` followed by the canonical JSON of the
attestation body: keys sorted, no whitespace (``separators=(",", ":")``), ASCII only
(``ensure_ascii=True``); the body holds only strings, integers, lists and objects (no floats),
so every JSON library encodes it to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pmargin.errors import InvalidInput

__all__ = [
    "DOMAIN",
    "canonical",
    "key_id",
    "load_or_create_key",
    "public_key_hex",
    "read_public_key",
    "sign_body",
    "verify_body",
]

DOMAIN = b"pmargin-attestation/1\x00"


def canonical(body: Any) -> bytes:
    """Canonical JSON bytes of ``body`` (floats refused: they have no single encoding)."""
    _no_floats(body, "attestation")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _no_floats(obj: Any, where: str) -> None:
    if isinstance(obj, float):
        raise InvalidInput(where, obj, "floats are not allowed in a signed body")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise InvalidInput(where, k, "keys must be strings")
            _no_floats(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_floats(v, f"{where}[{i}]")


def load_or_create_key(path: str | Path) -> Ed25519PrivateKey:
    """The signing key kept at ``path`` (PKCS#8 PEM), generated there on first use (mode 600).

    Raises
    ------
    InvalidInput
        The file exists but is not an Ed25519 private key, or is readable by others.
    """
    p = Path(path)
    if p.exists():
        if os.name == "posix" and p.stat().st_mode & 0o077:
            raise InvalidInput("attest.key_path", str(p),
                               "is readable by group or others: chmod 600 it")
        try:
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        except ValueError as exc:
            raise InvalidInput("attest.key_path", str(p), f"is not a PEM private key ({exc})"
                               ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput("attest.key_path", str(p), "is not an Ed25519 key")
        return key
    p.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key in hex."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def key_id(public_hex: str) -> str:
    """Short id of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def sign_body(key: Ed25519PrivateKey, body: dict[str, Any]) -> str:
    """Hex Ed25519 signature of :data:`DOMAIN` + :func:`canonical` ``(body)``."""
    return key.sign(DOMAIN + canonical(body)).hex()


def read_public_key(text: str, field: str = "public_key") -> Ed25519PublicKey:
    """A public key from 64 hex digits, a PEM ``PUBLIC KEY`` block or ``{"public_key": hex}``."""
    t = text.strip()
    if t.startswith("{"):
        try:
            t = str(json.loads(t)["public_key"])
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(field, t[:40], "JSON without a public_key string") from None
    if t.startswith("-----BEGIN"):
        try:
            pub = serialization.load_pem_public_key(t.encode())
        except ValueError as exc:
            raise InvalidInput(field, t[:40], f"is not a PEM public key ({exc})") from None
        if not isinstance(pub, Ed25519PublicKey):
            raise InvalidInput(field, t[:40], "is not an Ed25519 key")
        return pub
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        raise InvalidInput(field, t[:40], "is not hex, PEM or JSON") from None
    if len(raw) != 32:
        raise InvalidInput(field, t[:40], "an Ed25519 public key is 32 bytes (64 hex digits)")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_body(public: Ed25519PublicKey, body: dict[str, Any], signature_hex: str) -> bool:
    """True when ``signature_hex`` signs ``body`` under ``public``."""
    try:
        sig = bytes.fromhex(signature_hex)
    except (ValueError, TypeError):
        return False
    try:
        public.verify(sig, DOMAIN + canonical(body))
    except InvalidSignature:
        return False
    return True
