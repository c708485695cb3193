"""The compiled loops (numba) and the pure-NumPy fallback give the same results: both paths run on the same real and
random candles and are compared — exactly for everything discrete (signals, swing points, exit bars, trade lists)
and for comparisons-only arithmetic (rolling extremes, swing levels, the quiet-bar scan); within 1e-12 relative for
the recursive smoothers, whose NumPy path sums blockwise (a matrix product) where the loop sums bar by bar."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import compiled, indicators
from engine.backtest import run_backtest
from engine.confirmation import hourly_checks
from engine.exits import ExitRules, scan_quiet_bars
from engine.scan import scan_many
from engine.strategy import StrategyParams, _first_since_event, entry_signals
from engine.tests.conftest import random_walk_candles
from engine.tests.test_backtest import PARAMS, SCENARIOS, real_data, xrp_funding  # noqa: F401 (fixtures)
from engine.tests.test_exits import random_walk

RTOL = 1e-12


def both(fn):
    """``fn()`` on the compiled path, then on the NumPy path."""
    fast = fn()
    with compiled.numpy_only():
        assert not compiled.enabled()
        slow = fn()
    return fast, slow


def test_numba_is_installed_and_used():
    # numba is a pinned requirement: without it every comparison below would compare the NumPy path with itself
    assert compiled.enabled()
    with compiled.numpy_only():
        assert not compiled.enabled()
    assert compiled.enabled()


def assert_same_values(fast, slow, rtol=RTOL):
    fast, slow = np.asarray(fast), np.asarray(slow)
    assert fast.shape == slow.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    np.testing.assert_allclose(fast, slow, rtol=rtol, atol=0, equal_nan=True)


def series_cases(eth15):
    cases = [("eth_btc_15m", eth15)]
    for seed, n in ((1, 2_000), (2, 300), (3, 40), (4, 15), (5, 1)):
        cases.append((f"random_{seed}_{n}", random_walk_candles(n, seed=seed, vol=0.002 + 0.003 * seed)))
    return cases


@pytest.fixture(scope="module")
def eth15(eth_btc_5m):
    from engine.candles import resample

    return resample(eth_btc_5m, 15)


@pytest.mark.parametrize("period", [1, 2, 9, 14, 21])
def test_indicators_agree(eth15, period):
    for _name, c in series_cases(eth15):
        h, lo, cl, v = c.high, c.low, c.close, c.volume
        assert_same_values(*both(lambda cl=cl: indicators.ema(cl, period)))
        assert_same_values(*both(lambda cl=cl: indicators.rsi(cl, period)))
        assert_same_values(*both(lambda h=h, lo=lo, cl=cl: indicators.atr(h, lo, cl, period)))
        fast, slow = both(lambda h=h, lo=lo, cl=cl: indicators.directional_movement(h, lo, cl, period))
        for f, s in zip(fast, slow, strict=True):
            assert_same_values(f, s, rtol=1e-10)  # ADX divides differences of smoothed values: a few ulps more
        assert_same_values(*both(lambda v=v: indicators.sma(v, period)))
        assert_same_values(*both(lambda v=v: indicators.volume_ratio(v, period)))
        assert_same_values(*both(lambda lo=lo: indicators.rolling_min(lo, period)), rtol=0)
        assert_same_values(*both(lambda h=h: indicators.rolling_max(h, period)), rtol=0)
        for kind, values in (("high", h), ("low", lo)):
            fast, slow = both(lambda kind=kind, values=values: indicators.swing_points(values, period, kind=kind))
            np.testing.assert_array_equal(fast, slow)
        fast, slow = both(
            lambda h=h, lo=lo, cl=cl: indicators.support_resistance(h, lo, cl, window=period, lookback=96)
        )
        for f, s in zip(fast, slow, strict=True):
            assert_same_values(f, s, rtol=0)


def test_flat_and_gappy_values_agree():
    # ties (flat tops and bottoms), zero volume, NaN in the input: the discrete outputs must agree exactly
    x = np.array([1.0, 2, 2, 2, 1, 1, 3, 3, 0, 0, 0, 5, np.nan, 4, 4, 1, 2, 2, 1, 0, 0, 1], dtype=float)
    for window in (1, 2, 3):
        for kind in ("high", "low"):
            np.testing.assert_array_equal(*both(lambda w=window, k=kind: indicators.swing_points(x, w, kind=k)))
        assert_same_values(*both(lambda w=window: indicators.rolling_max(x, w)), rtol=0)
        assert_same_values(*both(lambda w=window: indicators.rolling_min(x, w)), rtol=0)
    volume = np.array([0.0, 0, 0, 5, 0, 0, 0, 0, 1, 2])
    assert_same_values(*both(lambda: indicators.volume_ratio(volume, 3)))
    flat = np.full(50, 7.0)
    assert_same_values(*both(lambda: indicators.rsi(flat, 14)))
    assert_same_values(*both(lambda: indicators.directional_movement(flat, flat, flat, 5)[2]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), window=st.integers(1, 6), density=st.floats(0.01, 0.9))
def test_first_bar_after_an_event_agrees(seed, window, density):
    rng = np.random.default_rng(seed)
    event = rng.random(300) < density / 4
    ok = rng.random(300) < density
    np.testing.assert_array_equal(*both(lambda: _first_since_event(event, ok, window)))


@pytest.mark.parametrize("params", [StrategyParams(), PARAMS, StrategyParams(ema_fast=5, ema_slow=13, quorum=3)])
def test_entry_signals_and_hourly_checks_agree(eth15, params):
    from engine.candles import resample

    for _name, c in series_cases(eth15)[:3]:
        fast, slow = both(lambda c=c: entry_signals(c, params))
        np.testing.assert_array_equal(fast.side, slow.side)
        for field in ("stop", "tp1", "tp2", "atr", "rsi", "volume_ratio", "ema_fast", "ema_slow", "sr_distance_atr"):
            assert_same_values(getattr(fast, field), getattr(slow, field))
        assert_same_values(fast.adx, slow.adx, rtol=1e-10)
        c1h = resample(c, 60, source_timeframe_ms=900_000)
        fast, slow = both(lambda c1h=c1h: hourly_checks(c1h, params))
        np.testing.assert_array_equal(fast.long, slow.long)
        np.testing.assert_array_equal(fast.short, slow.short)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    trailing=st.sampled_from([None, "atr", "pct"]),
    act=st.floats(0.0, 2.0),
    expiry=st.one_of(st.none(), st.integers(1, 200).map(lambda b: b * 900)),
    with_targets=st.booleans(),
)
def test_quiet_bar_scan_agrees(seed, trailing, act, expiry, with_targets):
    ts, o, h, lo, _close = random_walk(seed, 400)
    rng = np.random.default_rng(seed)
    k = 12
    start = np.sort(rng.integers(0, 390, k))
    long = rng.random(k) < 0.5
    sgn = np.where(long, 1.0, -1.0)
    entry = o[start]
    risk = entry * rng.uniform(0.003, 0.05, k)
    stop = entry - sgn * risk
    tp1 = np.where(with_targets, entry + sgn * risk * rng.uniform(0.5, 2, k), np.nan)
    tp2 = np.where(with_targets & (rng.random(k) < 0.7), entry + sgn * risk * rng.uniform(2, 4, k), np.nan)
    rules = ExitRules(
        trailing_mode=trailing,
        trailing_atr_mult=1.1,
        trailing_pct=0.006,
        trailing_activation_r=act,
        expiry_seconds=expiry,
    )
    kwargs = {
        "ts": ts,
        "open": o,
        "high": h,
        "low": lo,
        "start": start,
        "end": np.full(k, len(o)),
        "long": long,
        "entry": entry,
        "stop": stop,
        "initial_stop": stop,
        "tp1": tp1,
        "tp2": tp2,
        "best": entry.copy(),
        "atr": entry * 0.004,
        "opened_ts": ts[start],
        "rules": rules,
    }
    fast, slow = both(lambda: scan_quiet_bars(**kwargs))
    for f, s in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(f, s)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_backtest_trade_lists_agree(real_data, xrp_funding, scenario):  # noqa: F811
    fast, slow = both(lambda: run_backtest(real_data, PARAMS, SCENARIOS[scenario], funding=xrp_funding))
    assert len(fast.trades) == len(slow.trades) > 0
    for f, s in zip(fast.trades, slow.trades, strict=True):
        assert (f.symbol, f.side, f.signal_ts, f.entry_ts, f.exit_ts, f.reasons) == (
            s.symbol,
            s.side,
            s.signal_ts,
            s.entry_ts,
            s.exit_ts,
            s.reasons,
        )
        assert [x.ts for x in f.fills] == [x.ts for x in s.fills]
        assert f.net_pnl == pytest.approx(s.net_pnl, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(fast.equity, slow.equity, rtol=1e-9)
    assert fast.counters == slow.counters


def test_scan_candidates_agree(eth15):
    from engine.candles import resample

    universe = {}
    for i in range(12):
        c = random_walk_candles(600, seed=100 + i, vol=0.006)
        universe[f"S{i}"] = (c, resample(c, 60, source_timeframe_ms=900_000))
    universe["ETH_BTC"] = (eth15, None)
    now = int(eth15.ts[-1]) + 900_000
    params = StrategyParams(adx_min=10.0, quorum=1, volume_ratio_min=0.8)
    fast, slow = both(lambda: scan_many(universe, params, now_ms=now))
    assert [(c.symbol, c.side, c.candle_ts, c.risk_level) for c in fast.candidates] == [
        (c.symbol, c.side, c.candle_ts, c.risk_level) for c in slow.candidates
    ]
    assert fast.skipped == slow.skipped


def test_candle_checks_agree():
    from engine.candles import Candles, check_candles

    rng = np.random.default_rng(3)
    base = random_walk_candles(400, seed=9)
    ts = base.ts.copy()
    ts[50] = ts[49]  # duplicate
    ts[120:] += 3 * 900_000  # a gap of three candles
    ts[200] -= 7  # off the grid (and a step back)
    close = base.close.copy()
    close[300] = np.nan
    high = base.high.copy()
    high[310] = base.low[310] * 0.5  # high below the body
    volume = base.volume.copy()
    volume[rng.integers(0, 400, 30)] = 0.0
    broken = Candles(ts, base.open, high, base.low, close, volume)
    for candles in (base, broken, base.tail(0), base.tail(1)):
        for timeframe in (900_000, 3_600_000, 2 * 86_400_000):
            fast, slow = both(lambda c=candles, t=timeframe: check_candles(c, t, min_rows=10))
            assert fast == slow
    assert not check_candles(broken, 900_000).ok
