"""Ed25519 key file, canonical encoding and signatures."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import serialization

from pmargin.attest.signing import (
    DOMAIN,
    canonical,
    load_or_create_key,
    public_key_hex,
    read_public_key,
    sign_body,
    verify_body,
)
from pmargin.errors import InvalidInput


def test_key_created_once_mode_600(tmp_path) -> None:
    p = tmp_path / "var" / "k.pem"
    k1 = load_or_create_key(p)
    assert (p.stat().st_mode & 0o777) == 0o600
    k2 = load_or_create_key(p)
    assert public_key_hex(k1) == public_key_hex(k2)


def test_group_readable_key_refused(tmp_path) -> None:
    p = tmp_path / "k.pem"
    load_or_create_key(p)
    os.chmod(p, 0o640)
    with pytest.raises(InvalidInput) as e:
        load_or_create_key(p)
    assert e.value.field == "attest.key_path"


def test_canonical_is_sorted_compact_ascii() -> None:
    assert canonical({"b": 1, "a": ["é", {"d": None, "c": True}]}) == \
        b'{"a":["\\u00e9",{"c":true,"d":null}],"b":1}'
    with pytest.raises(InvalidInput) as e:
        canonical({"x": {"y": 0.5}})
    assert e.value.field == "attestation.x.y"


def test_sign_and_verify(tmp_path) -> None:
    key = load_or_create_key(tmp_path / "k.pem")
    body = {"epoch": 3, "merkle_root": "ab" * 32}
    sig = sign_body(key, body)
    pub = key.public_key()
    # the signature is over DOMAIN + canonical JSON, checked with the library directly
    pub.verify(bytes.fromhex(sig), DOMAIN + json.dumps(body, sort_keys=True,
                                                         separators=(",", ":")).encode())
    assert verify_body(pub, body, sig)
    assert not verify_body(pub, {**body, "epoch": 4}, sig)
    assert not verify_body(pub, body, sig[:-2] + ("00" if sig[-2:] != "00" else "01"))
    assert not verify_body(pub, body, "zz")
    other = load_or_create_key(tmp_path / "other.pem").public_key()
    assert not verify_body(other, body, sig)


def test_read_public_key_forms(tmp_path) -> None:
    key = load_or_create_key(tmp_path / "k.pem")
    hexkey = public_key_hex(key)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for text in (hexkey, pem, json.dumps({"public_key": hexkey})):
        assert public_key_hex(read_public_key(text)) == hexkey
    with pytest.raises(InvalidInput) as e:
        read_public_key("abcd", "--public-key")
    assert e.value.field == "--public-key"
