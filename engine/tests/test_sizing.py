"""Sizing: hand-computed cases and hypothesis properties (rounded down to the step, never above max leverage)."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidParameters, OrderBelowMinimum
from engine.sizing import MarketLimits, effective_leverage, position_quantity, round_down

BTC = MarketLimits(amount_step=D("0.001"), min_qty=D("0.001"), min_notional=D("5"), max_leverage=D("50"))


def test_balance_pct_with_leverage():
    # 10% of 1000 = 100 margin, x5 = 500 notional at 25000 -> 0.02 BTC
    q = position_quantity(balance=D(1000), entry=D(25000), mode="balance_pct", pct=D(10), leverage=5, market=BTC)
    assert q == D("0.020")


def test_risk_pct_is_loss_at_stop_and_rounds_down():
    # risk 1% of 1000 = 10 USDT over a 300 distance -> 0.0333.. -> 0.033
    q = position_quantity(
        balance=D(1000), entry=D(25000), stop=D(24700), mode="risk_pct", pct=D(1), leverage=10, market=BTC
    )
    assert q == D("0.033")
    assert q * D(300) <= D(10)


def test_risk_pct_capped_by_leverage():
    # a tight stop would ask for 10/1 = 10 BTC; leverage 2 caps notional at 2000 -> 0.08 BTC
    q = position_quantity(
        balance=D(1000), entry=D(25000), stop=D(24999), mode="risk_pct", pct=D(1), leverage=2, market=BTC
    )
    assert q == D("0.080")


def test_leverage_capped_by_user_and_market():
    assert effective_leverage(leverage=100, max_leverage=20) == 20
    assert effective_leverage(leverage=100, max_leverage=75, market=BTC) == 50


def test_below_minimum_raises_or_zero():
    with pytest.raises(OrderBelowMinimum, match="below the market minimum"):
        position_quantity(balance=D(10), entry=D(25000), mode="balance_pct", pct=D(10), market=BTC)
    assert (
        position_quantity(
            balance=D(10), entry=D(25000), mode="balance_pct", pct=D(10), market=BTC, on_below_minimum="zero"
        )
        == 0
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"balance": D(0)}, "balance"),
        ({"entry": D(-1)}, "entry"),
        ({"pct": D(150)}, "pct"),
        ({"mode": "kelly"}, "mode"),
        ({"mode": "risk_pct"}, "needs a stop"),
        ({"mode": "risk_pct", "stop": D(100)}, "risk per unit is zero"),
        ({"leverage": 0}, "leverage"),
        ({"balance": 1000.0}, "not float"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    args = {"balance": D(1000), "entry": D(100), "mode": "balance_pct", "pct": D(10)} | kwargs
    with pytest.raises(InvalidParameters, match=match):
        position_quantity(**args)


def decimals(lo, hi, places):
    return st.decimals(min_value=D(lo), max_value=D(hi), places=places, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    balance=decimals("1", "1000000", 2),
    entry=decimals("0.0001", "100000", 4),
    stop_frac=decimals("0.001", "0.5", 3),
    mode=st.sampled_from(["balance_pct", "risk_pct"]),
    pct=decimals("0.01", "100", 2),
    leverage=st.integers(1, 200),
    max_leverage=st.integers(1, 125),
    step=st.sampled_from([D("1"), D("0.1"), D("0.001"), D("0.00001")]),
)
def test_sizing_properties(balance, entry, stop_frac, mode, pct, leverage, max_leverage, step):
    market = MarketLimits(amount_step=step)
    stop = entry * (1 - stop_frac)
    q = position_quantity(
        balance=balance,
        entry=entry,
        stop=stop,
        mode=mode,
        pct=pct,
        leverage=leverage,
        max_leverage=max_leverage,
        market=market,
        on_below_minimum="zero",
    )
    assert q >= 0
    assert q % step == 0  # rounded to the precision
    assert q * entry <= balance * min(leverage, max_leverage)  # never above max leverage
    # rounded DOWN: one more step would exceed the unrounded size or the leverage cap
    lev = min(leverage, max_leverage)
    raw = balance * pct / 100 * lev / entry if mode == "balance_pct" else balance * pct / 100 / (entry - stop)
    raw = min(raw, balance * lev / entry)
    assert q <= raw < q + step
    if mode == "risk_pct":
        assert q * (entry - stop) <= balance * pct / 100  # loss at the stop never above the risk budget


def test_round_down():
    assert round_down(D("1.23456"), D("0.01")) == D("1.23")
    assert round_down(D("0.3"), D("0.1")) == D("0.3")
    assert round_down(D("7"), D("5")) == D("5")
