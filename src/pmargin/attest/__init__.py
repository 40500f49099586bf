"""Signed attestations of the margins of an epoch, verifiable by anyone (issue 11).

* :mod:`~pmargin.attest.leaves`: one fixed-point leaf per account, vectorised encoding;
* :mod:`~pmargin.attest.merkle`: the Merkle tree (RFC 6962 shape), inclusion proofs;
* :mod:`~pmargin.attest.signing`: Ed25519 key, canonical encoding, signatures;
* :mod:`~pmargin.attest.inputs`: the exported inputs, the market digest, the event-log chain;
* :mod:`~pmargin.attest.epoch`: an epoch's attestation and its recompute from inputs;
* :mod:`~pmargin.attest.verify`: the checks of ``pmargin verify``.

The package imports the core (market, book, engine, models) and never the service.
See docs/attestations.md.
"""
