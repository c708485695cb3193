"""Maximum-drawdown math (engine.risk): the peak never falls, and refusal happens iff the drawdown reaches the limit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidParameters
from engine.risk import drawdown_breached, drawdown_pct, peak_after

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2)
limits = st.decimals(min_value=Decimal("1"), max_value=Decimal("100"), places=4)


def test_hand_computed_values():
    assert drawdown_pct(Decimal("10000"), Decimal("8900")) == Decimal("11")
    assert drawdown_breached(Decimal("10000"), Decimal("8900"), Decimal("10"))
    assert drawdown_breached(Decimal("10000"), Decimal("9000"), Decimal("10"))  # exactly at the limit refuses
    assert not drawdown_breached(Decimal("10000"), Decimal("9000.01"), Decimal("10"))
    assert drawdown_pct(Decimal("100"), Decimal("120")) == 0  # above the peak: no drawdown
    assert not drawdown_breached(None, Decimal("5"), Decimal("10"))  # no peak yet
    assert not drawdown_breached(Decimal("0"), Decimal("-5"), Decimal("10"))  # no positive peak
    assert drawdown_pct(100.0, 75.0) == 25.0  # floats work too (backtests)


def test_the_limit_must_be_positive():
    with pytest.raises(InvalidParameters):
        drawdown_breached(Decimal("100"), Decimal("50"), Decimal("0"))


@given(st.lists(money, min_size=1, max_size=40))
def test_peak_is_monotone_and_the_running_maximum(equities):
    peak = None
    for i, equity in enumerate(equities):
        new_peak = peak_after(peak, equity)
        assert peak is None or new_peak >= peak  # never falls
        assert new_peak >= equity
        assert new_peak == max(equities[: i + 1])
        peak = new_peak


@given(st.lists(money, min_size=1, max_size=40), limits)
def test_refusal_iff_the_drawdown_reaches_the_limit(equities, limit):
    peak = None
    for equity in equities:
        peak = peak_after(peak, equity)
        dd = drawdown_pct(peak, equity)
        assert 0 <= dd < 100
        assert drawdown_breached(peak, equity, limit) == (dd >= limit)
        assert drawdown_breached(peak, equity, limit) == ((peak - equity) * 100 >= limit * peak)  # no division


@given(money, money, limits)
def test_at_or_above_the_peak_never_refuses(peak, gain, limit):
    assert not drawdown_breached(peak, peak + gain, limit)
    assert not drawdown_breached(peak, peak, limit)
