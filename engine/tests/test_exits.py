"""Exit rules: hand-computed candles for each rule, and the vectorised quiet-bar scan == step applied bar by bar."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidParameters
from engine.exits import ExitEvent, ExitRules, PositionState, scan_quiet_bars, step

RULES = ExitRules()


def long_pos(**kw):
    base = {
        "side": "long",
        "entry": 100.0,
        "stop": 95.0,
        "tp1": 105.0,
        "tp2": 110.0,
        "quantity": 2.0,
        "opened_ts": 0,
        "atr": 2.0,
    }
    base.update(kw)
    return PositionState.open(**base)


def short_pos(**kw):
    base = {
        "side": "short",
        "entry": 100.0,
        "stop": 105.0,
        "tp1": 95.0,
        "tp2": 90.0,
        "quantity": 2.0,
        "opened_ts": 0,
        "atr": 2.0,
    }
    base.update(kw)
    return PositionState.open(**base)


def bar(o, h, lo, c, ts=0):
    return {"ts": ts, "open": o, "high": h, "low": lo, "close": c}


def test_quiet_candle_tracks_best_price_only():
    st_, ev = step(long_pos(), **bar(100, 103, 97, 102), rules=RULES)
    assert ev == [] and st_.best_price == 103 and st_.stop == 95 and st_.remaining == 2


def test_stop_loss_touch_fills_at_stop():
    _, ev = step(long_pos(), **bar(100, 101, 94, 96), rules=RULES)
    assert ev == [ExitEvent("sl", 95.0, 2.0)]


def test_gap_through_stop_fills_at_open():
    _, ev = step(long_pos(), **bar(93, 99, 92, 98), rules=RULES)
    assert ev == [ExitEvent("sl", 93.0, 2.0)]
    _, ev = step(short_pos(), **bar(107, 108, 101, 102), rules=RULES)
    assert ev == [ExitEvent("sl", 107.0, 2.0)]


def test_stop_and_target_in_one_candle_stop_wins():
    st_, ev = step(long_pos(), **bar(100, 111, 94, 100), rules=RULES)
    assert ev == [ExitEvent("sl", 95.0, 2.0)] and st_.remaining == 0


def test_tp1_partial_then_breakeven_from_next_candle():
    st_, ev = step(long_pos(), **bar(100, 106, 99, 104), rules=RULES)
    assert ev == [ExitEvent("tp1", 105.0, 1.0)]
    assert st_.remaining == 1.0 and st_.tp1_done and st_.stop == 100.0 and st_.stop_reason == "breakeven"
    st2, ev2 = step(st_, **bar(104, 104, 99.5, 100), rules=RULES)
    assert ev2 == [ExitEvent("breakeven", 100.0, 1.0)] and st2.remaining == 0


def test_tp1_and_tp2_in_one_candle():
    st_, ev = step(short_pos(), **bar(100, 100.5, 89, 90), rules=RULES)
    assert ev == [ExitEvent("tp1", 95.0, 1.0), ExitEvent("tp2", 90.0, 1.0)] and st_.remaining == 0


def test_no_breakeven_when_disabled():
    st_, _ = step(long_pos(), **bar(100, 106, 99, 104), rules=ExitRules(breakeven_after_tp1=False))
    assert st_.stop == 95.0 and st_.stop_reason == "sl"


def test_trailing_atr_activates_after_profit_in_r():
    rules = ExitRules(trailing_mode="atr", trailing_atr_mult=1.5, trailing_activation_r=0.5)
    pos = long_pos(tp1=None, tp2=None)
    st1, _ = step(pos, **bar(100, 102, 99, 101), rules=rules)  # +2 < 0.5R=2.5: not active
    assert st1.stop == 95.0
    st2, _ = step(st1, **bar(101, 104, 100, 103), rules=rules)  # best 104: trail 104 - 3 = 101
    assert st2.stop == 101.0 and st2.stop_reason == "trailing"
    st3, _ = step(st2, **bar(103, 103.5, 102, 102.5), rules=rules)  # best stays 104, stop never loosens
    assert st3.stop == 101.0
    _, ev = step(st3, **bar(102, 102, 100.5, 101), rules=rules)
    assert ev == [ExitEvent("trailing", 101.0, 2.0)]


def test_trailing_pct_short():
    rules = ExitRules(trailing_mode="pct", trailing_pct=0.02, trailing_activation_r=0.0)
    st1, _ = step(short_pos(tp1=None, tp2=None), **bar(100, 100, 90, 91), rules=rules)
    assert st1.stop == pytest.approx(90 * 1.02) and st1.stop_reason == "trailing"


def test_expiry_closes_at_open():
    rules = ExitRules(expiry_seconds=3600)
    pos = long_pos(opened_ts=1_000_000)
    _, ev = step(pos, **bar(101, 102, 100, 101, ts=1_000_000 + 3_599_999), rules=rules)
    assert ev == []
    _, ev = step(pos, **bar(101.5, 102, 100, 101, ts=1_000_000 + 3_600_000), rules=rules)
    assert ev == [ExitEvent("expiry", 101.5, 2.0)]


def test_closed_position_is_inert_and_bad_inputs_raise():
    st_, _ = step(long_pos(), **bar(100, 101, 94, 96), rules=RULES)
    done, _ = step(st_, **bar(100, 101, 94, 96), rules=RULES)
    assert step(done, **bar(1, 1, 1, 1), rules=RULES)[1] == []
    with pytest.raises(InvalidParameters, match="stop"):
        long_pos(stop=101.0)
    with pytest.raises(InvalidParameters, match="tp1"):
        short_pos(tp1=101.0)
    with pytest.raises(InvalidParameters, match="tp1_close_fraction"):
        ExitRules(tp1_close_fraction=0).validate()
    with pytest.raises(InvalidParameters, match="trailing_mode"):
        ExitRules(trailing_mode="fib").validate()


# ---- the vectorised scan equals step() applied bar by bar ---------------------------------------------------


def run_bar_by_bar(state, ts, o, h, lo, c, start, rules):
    out = []
    for i in range(start, len(o)):
        state, ev = step(state, ts=int(ts[i]), open=o[i], high=h[i], low=lo[i], close=c[i], rules=rules)
        out += [(i, e) for e in ev]
        if not state.is_open:
            break
    return out


def run_with_scan(state, ts, o, h, lo, c, start, rules, block):
    """What the backtester does: skip quiet bars with scan_quiet_bars, call step on the event bars."""
    out = []
    i = start
    while state.is_open and i < len(o):
        q = scan_quiet_bars(
            ts=ts,
            open=o,
            high=h,
            low=lo,
            start=np.array([i]),
            end=np.array([len(o)]),
            long=np.array([state.side == "long"]),
            entry=np.array([state.entry]),
            stop=np.array([state.stop]),
            initial_stop=np.array([state.initial_stop]),
            tp1=np.array([np.nan if state.tp1_done or state.tp1 is None else state.tp1]),
            tp2=np.array([np.nan if state.tp2 is None else state.tp2]),
            best=np.array([state.best_price]),
            atr=np.array([state.atr]),
            opened_ts=np.array([state.opened_ts]),
            rules=rules,
            block=block,
        )
        k = int(q.bar[0])
        if k < 0:
            break

        state = dataclasses.replace(
            state,
            best_price=float(q.best_price[0]),
            stop=float(q.stop[0]),
            stop_reason="trailing" if q.trailing[0] else state.stop_reason,
        )
        state, ev = step(state, ts=int(ts[k]), open=o[k], high=h[k], low=lo[k], close=c[k], rules=rules)
        out += [(k, e) for e in ev]
        i = k + 1
    return out


def random_walk(seed, n):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    op = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    hi = np.maximum(op, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
    lo = np.minimum(op, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
    ts = np.arange(n, dtype=np.int64) * 900_000
    return ts, op, hi, lo, close


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    side=st.sampled_from(["long", "short"]),
    stop_r=st.floats(0.005, 0.05),
    tp1_r=st.one_of(st.none(), st.floats(0.3, 2.0)),
    tp2_extra=st.one_of(st.none(), st.floats(0.1, 2.0)),
    frac=st.sampled_from([0.25, 0.5, 1.0]),
    be=st.booleans(),
    trailing=st.sampled_from([None, "atr", "pct"]),
    act=st.floats(0.0, 2.0),
    expiry=st.one_of(st.none(), st.integers(1, 400).map(lambda b: b * 900)),
    block=st.sampled_from([1, 3, 64]),
)
def test_scan_equals_bar_by_bar(seed, side, stop_r, tp1_r, tp2_extra, frac, be, trailing, act, expiry, block):
    ts, o, h, lo, c = random_walk(seed, 300)
    entry = float(o[5])
    sgn = 1 if side == "long" else -1
    risk = entry * stop_r
    tp1 = None if tp1_r is None else entry + sgn * tp1_r * risk
    tp2 = None if tp2_extra is None else entry + sgn * ((tp1_r or 0) + tp2_extra) * risk
    pos = PositionState.open(
        side=side,
        entry=entry,
        stop=entry - sgn * risk,
        tp1=tp1,
        tp2=tp2,
        quantity=1.0,
        opened_ts=int(ts[5]),
        atr=entry * 0.004,
    )
    rules = ExitRules(
        tp1_close_fraction=frac,
        breakeven_after_tp1=be,
        trailing_mode=trailing,
        trailing_atr_mult=1.3,
        trailing_pct=0.007,
        trailing_activation_r=act,
        expiry_seconds=expiry,
    )
    ref = run_bar_by_bar(pos, ts, o, h, lo, c, 5, rules)
    fast = run_with_scan(pos, ts, o, h, lo, c, 5, rules, block)
    assert fast == ref


@pytest.mark.parametrize("trailing", [None, "pct"])
def test_scan_equals_bar_by_bar_for_a_long_holding(trailing):
    # a far stop and no targets: the position lives for thousands of candles (the scan's growing blocks)
    ts, o, h, lo, c = random_walk(42, 20_000)
    pos = PositionState.open(
        side="long",
        entry=float(o[0]),
        stop=float(o[0]) * 0.2,
        tp1=None,
        tp2=None,
        quantity=1.0,
        opened_ts=0,
        atr=1.0,
    )
    rules = ExitRules(trailing_mode=trailing, trailing_pct=0.3, trailing_activation_r=0.05)
    ref = run_bar_by_bar(pos, ts, o, h, lo, c, 0, rules)
    assert ref[0][0] > 500 and ref[0][1].reason == ("trailing" if trailing else "sl")
    assert ref == run_with_scan(pos, ts, o, h, lo, c, 0, rules, 64)
