from datetime import UTC, datetime

import pytest

from pmargin.errors import UnknownInstrument
from pmargin.instruments import InstrumentKind, OptionRight, Settlement, parse_instrument


@pytest.mark.parametrize(
    ("name", "kind", "settlement", "settle"),
    [
        ("BTC-PERPETUAL", InstrumentKind.PERPETUAL, Settlement.INVERSE, "BTC"),
        ("BTC-28JUN24", InstrumentKind.FUTURE, Settlement.INVERSE, "BTC"),
        ("BTC-28JUN24-65000-C", InstrumentKind.OPTION, Settlement.INVERSE, "BTC"),
        ("BTC_USDC-PERPETUAL", InstrumentKind.PERPETUAL, Settlement.LINEAR, "USDC"),
        ("ETH_USDC-17NOV23-1850-P", InstrumentKind.OPTION, Settlement.LINEAR, "USDC"),
        ("BTC_USDC", InstrumentKind.SPOT, Settlement.LINEAR, "USDC"),
    ],
)
def test_names_parse_and_format_round_trip(name, kind, settlement, settle):
    inst = parse_instrument(name)
    assert inst.kind is kind
    assert inst.settlement is settlement
    assert inst.settle_currency == settle
    assert inst.name == name
    assert parse_instrument(inst.name) == inst


def test_option_fields_and_expiry_at_eight_utc():
    inst = parse_instrument("ETH_USDC-17NOV23-1850-P")
    assert inst.underlying == "ETH"
    assert inst.strike == 1850.0
    assert inst.right is OptionRight.PUT
    assert inst.expiry == datetime(2023, 11, 17, 8, 0, tzinfo=UTC)


def test_day_is_not_zero_padded_and_decimal_strike():
    inst = parse_instrument("BTC-5FEB26-70000-C")
    assert inst.expiry == datetime(2026, 2, 5, 8, tzinfo=UTC)
    assert parse_instrument("XRP_USDC-28JUN24-0d625-C").strike == 0.625
    assert parse_instrument("XRP_USDC-28JUN24-0d625-C").name == "XRP_USDC-28JUN24-0d625-C"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("BTC-32JUN24", "calendar date"),
        ("BTC-28XYZ24", "expiry"),
        ("BTC-28JUN24-abc-C", "strike"),
        ("BTC-28JUN24-65000-X", "option type"),
        ("BTC-28JUN24--5-C", "not of the form"),
        ("BTC_EUR-PERPETUAL", "quote currency"),
        ("BTC", "quote currency"),
        ("", "non-empty"),
        ("BTC-28JUN24-0-C", "positive"),
    ],
)
def test_malformed_names_raise_naming_the_field(name, fragment):
    with pytest.raises(UnknownInstrument, match="instrument") as err:
        parse_instrument(name)
    assert fragment in str(err.value)


def test_package_exports_are_lazy_and_resolve():
    import subprocess
    import sys

    code = ("import sys, pmargin; assert 'numpy' not in sys.modules; "
            "assert pmargin.load_model('deribit-pm').name == 'deribit-pm'; "
            "assert all(getattr(pmargin, n) is not None for n in pmargin.__all__)")
    subprocess.run([sys.executable, "-c", code], check=True)
