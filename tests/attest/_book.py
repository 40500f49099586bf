"""A small inputs document (three BTC accounts on a flat-vol market) for the attest tests."""

from __future__ import annotations

from typing import Any

from tests.factories import expiry_code, make_market

C30 = expiry_code(30)


def inputs_doc() -> dict[str, Any]:
    """An inputs document as the service exports it (market stored as JSON)."""
    from pmargin.models import load_model

    mkt = make_market(index={"BTC": 80000.0}, linear=False)
    model = load_model("deribit-pm")
    return {
        "format": "pmargin-attest-inputs/1", "epoch": 1, "seq": 9,
        "market": {"format": "json", "market": mkt.to_dict()},
        "books": [{
            "id": "BTC", "margin_currency": "BTC", "model": "deribit-pm",
            "params_digest": model.digest, "collateral_currencies": ["BTC"],
            "instruments": [f"BTC-{C30}", f"BTC-{C30}-80000-P", f"BTC-{C30}-90000-C",
                            "BTC-PERPETUAL"],
            "accounts": [
                {"id": "carol", "positions": [[f"BTC-{C30}-80000-P", "-2", "0"],
                                              ["BTC-PERPETUAL", "0.5", "40000"]],
                 "balances": {"BTC": "1.5"}},
                {"id": "alice", "positions": [[f"BTC-{C30}-90000-C", "-1", "0"]],
                 "balances": {"BTC": "0.02"}},
                {"id": "bob", "positions": [], "balances": {"BTC": "3"}},
            ]}],
    }
