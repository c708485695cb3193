"""PnL math: hand-computed values and hypothesis properties (fees/funding always counted, long/short symmetry,
the equity identity after any sequence of events)."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidParameters
from engine.pnl import (
    AccountLedger,
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
    for side in ("long", "short"):
        led = AccountLedger(start=D(1000))
        led.open(symbol="X", side=side, price=a, quantity=q, fee_rate=fr)
        led.charge_funding(symbol="X", mark=a, rate=r)
        led.reduce(symbol="X", price=b, quantity=q, fee_rate=fr)
        gross = price_pnl(side=side, entry=a, exit=b, quantity=q)
        assert led.fees > 0  # fees always counted
        assert led.balance == D(1000) + gross - led.fees - led.funding  # funding always counted
        assert led.balance < D(1000) + gross - funding_payment(side=side, mark=a, quantity=q, rate=r) + D("1e-30")


event = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(["A", "B", "C"]), st.sampled_from(["long", "short"]), price, qty),
    st.tuples(st.just("reduce"), st.sampled_from(["A", "B", "C"]), st.floats(0.1, 1.0), price),
    st.tuples(st.just("funding"), st.sampled_from(["A", "B", "C"]), rate, price),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(event, max_size=30), marks=st.tuples(price, price, price))
def test_equity_identity_after_any_sequence(events, marks):
    led = AccountLedger(start=D(10000))
    fee_rate = D("0.0005")
    for ev in events:
        kind, sym = ev[0], ev[1]
        if kind == "open" and sym not in led.positions:
            led.open(symbol=sym, side=ev[2], price=ev[3], quantity=ev[4], fee_rate=fee_rate)
        elif kind == "reduce" and sym in led.positions:
            q = (led.positions[sym].quantity * D(str(round(ev[2], 2)))).quantize(D("0.001"))
            if q > 0:
                led.reduce(symbol=sym, price=ev[3], quantity=min(q, led.positions[sym].quantity), fee_rate=fee_rate)
        elif kind == "funding" and sym in led.positions:
            led.charge_funding(symbol=sym, mark=ev[3], rate=ev[2])
    mark_map = dict(zip(["A", "B", "C"], marks, strict=True))
    assert led.identity_gap(mark_map) == 0
    u = led.unrealised(mark_map)
    assert led.equity(mark_map) == led.start + led.realised + u - led.fees - led.funding
