"""PnL math: hand-computed values and hypothesis properties (fees always a cost, long/short symmetry)."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidParameters
from engine.pnl import (
    fee,
    funding_payment,
    price_pnl,
    r_multiple,
    slipped_price,
    unrealised_pnl,
)


def test_hand_computed_trade():
    # long 2 @ 100 -> 110, taker 0.05% both ways, one funding of 0.01% at mark 105
    gross = price_pnl(side="long", entry=D(100), exit=D(110), quantity=D(2))
    fees = fee(price=D(100), quantity=D(2), rate=D("0.0005")) + fee(price=D(110), quantity=D(2), rate=D("0.0005"))
    fund = funding_payment(side="long", mark=D(105), quantity=D(2), rate=D("0.0001"))
    assert gross == D(20) and fees == D("0.21") and fund == D("0.0210")
    assert gross - fees - fund == D("19.7690")
    assert r_multiple(pnl=gross, entry=D(100), stop=D(95), quantity=D(2)) == 2
    assert unrealised_pnl(side="short", entry=D(100), mark=D(90), quantity=D(1)) == 10


def test_slippage_always_against_the_trader():
    assert slipped_price(price=100.0, side="long", slippage=0.001, opening=True) == pytest.approx(100.1)
    assert slipped_price(price=100.0, side="long", slippage=0.001, opening=False) == pytest.approx(99.9)
    assert slipped_price(price=100.0, side="short", slippage=0.001, opening=True) == pytest.approx(99.9)
    assert slipped_price(price=100.0, side="short", slippage=0.001, opening=False) == pytest.approx(100.1)


def test_bad_side_and_zero_risk():
    with pytest.raises(InvalidParameters, match="side"):
        price_pnl(side="up", entry=1, exit=2, quantity=1)
    with pytest.raises(InvalidParameters, match="zero risk"):
        r_multiple(pnl=1, entry=D(1), stop=D(1), quantity=D(1))


price = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)
qty = st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3)
rate = st.decimals(min_value=D("-0.003"), max_value=D("0.003"), places=6)


@settings(max_examples=300, deadline=None)
@given(a=price, b=price, q=qty, fr=st.decimals(min_value=D("0.00001"), max_value=D("0.001"), places=5), r=rate)
def test_long_short_symmetric_and_costs_counted(a, b, q, fr, r):
    assert price_pnl(side="long", entry=a, exit=b, quantity=q) == -price_pnl(side="short", entry=a, exit=b, quantity=q)
    assert price_pnl(side="long", entry=a, exit=b, quantity=q) == price_pnl(side="short", entry=b, exit=a, quantity=q)
    assert funding_payment(side="long", mark=a, quantity=q, rate=r) == -funding_payment(
        side="short", mark=a, quantity=q, rate=r
    )
    assert fee(price=a, quantity=q, rate=fr) > 0 and fee(price=b, quantity=q, rate=fr) > 0
