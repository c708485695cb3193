from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidParameters
from engine.risk import RISK_LEVELS, RiskThresholds, risk_level, risk_score

ALL_FOUR = ("trend", "volume", "momentum", "structure")


def level(**overrides):
    values = {"atr_pct": 0.8, "sr_distance_atr": None, "confirmations": ALL_FOUR, "funding_rate": None, "side": "long"}
    values.update(overrides)
    return risk_level(**values)


def test_calm_fully_confirmed_signal_is_low():
    assert level() == "low"


def test_volatility_and_thin_confirmation_raise_the_level():
    assert level(atr_pct=2.0, confirmations=2) == "medium"  # +1 +1
    assert level(atr_pct=3.5, confirmations=2) == "high"  # +2 +1
    assert level(atr_pct=3.5, confirmations=ALL_FOUR) == "medium"  # +2 -1: the 4-of-4 bonus offsets one point
    assert level(atr_pct=0.8, confirmations=1) == "medium"  # below the quorum: +2


def test_close_opposing_level_adds_risk():
    assert risk_score(atr_pct=0.8, sr_distance_atr=0.6, confirmations=3, side="long") == 1
    assert risk_score(atr_pct=0.8, sr_distance_atr=2.0, confirmations=3, side="long") == 0
    assert risk_score(atr_pct=0.8, sr_distance_atr=float("nan"), confirmations=3, side="long") == 0


def test_paying_funding_raises_risk_receiving_does_not():
    base = {"atr_pct": 0.8, "sr_distance_atr": None, "confirmations": 3}
    assert risk_level(**base, funding_rate=0.0001, side="long") == "low"
    assert risk_level(**base, funding_rate=0.0005, side="long") == "medium"  # longs pay positive funding
    assert risk_level(**base, funding_rate=0.002, side="long") == "medium"  # +2 = 2
    assert risk_level(**base, funding_rate=-0.002, side="short") == "medium"  # shorts pay negative funding
    assert risk_level(**base, funding_rate=-0.002, side="long") == "low"  # longs receive it
    assert risk_level(**{**base, "confirmations": 2}, funding_rate=0.002, side="long") == "high"


@given(
    atr_pct=st.floats(0, 20),
    sr=st.one_of(st.none(), st.floats(0, 10)),
    count=st.integers(0, 4),
    low=st.floats(-0.01, 0.01),
    extra=st.floats(0, 0.01),
    side=st.sampled_from(["long", "short"]),
)
def test_paying_more_funding_never_lowers_the_level(atr_pct, sr, count, low, extra, side):
    sign = 1 if side == "long" else -1
    kwargs = {"atr_pct": atr_pct, "sr_distance_atr": sr, "confirmations": count, "side": side}
    cheaper = risk_level(**kwargs, funding_rate=sign * low)
    dearer = risk_level(**kwargs, funding_rate=sign * (low + extra))
    assert RISK_LEVELS.index(dearer) >= RISK_LEVELS.index(cheaper)


def test_thresholds_are_configurable():
    strict = RiskThresholds(low_max=-1)
    assert risk_level(atr_pct=0.8, sr_distance_atr=None, confirmations=3, side="long", thresholds=strict) == "medium"


def test_invalid_input():
    with pytest.raises(InvalidParameters):
        level(side="buy")
    with pytest.raises(InvalidParameters):
        level(atr_pct=float("nan"))
