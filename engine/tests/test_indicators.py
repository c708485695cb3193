"""Indicators against `ta` 0.11 (the reference implementation) on real candles, plus look-ahead checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import indicators
from engine.errors import InvalidParameters
from engine.tests.conftest import random_walk_candles

RTOL = 1e-9


def assert_matches_ta(ours: np.ndarray, reference: pd.Series, *, ta_warmup_value: float | None = None):
    ref = reference.to_numpy(dtype=float)
    defined = ~np.isnan(ours)
    assert defined.sum() > 0
    np.testing.assert_allclose(ours[defined], ref[defined], rtol=RTOL, atol=0)
    # where we say "not yet defined", ta says NaN (or its placeholder value for ATR/ADX)
    undefined_ref = ref[~defined]
    if ta_warmup_value is None:
        assert np.isnan(undefined_ref).all()
    else:
        assert np.all(np.isnan(undefined_ref) | (undefined_ref == ta_warmup_value))


@pytest.fixture(params=["xrp_5m", "eth_btc_5m"])
def series(request):
    c = request.getfixturevalue(request.param)
    return c, pd.Series(c.high), pd.Series(c.low), pd.Series(c.close), pd.Series(c.volume)


@pytest.mark.parametrize("period", [9, 21, 50])
def test_ema_matches_ta(series, period):
    c, _, _, close, _ = series
    assert_matches_ta(indicators.ema(c.close, period), ta.trend.EMAIndicator(close, period).ema_indicator())


@pytest.mark.parametrize("period", [20, 50])
def test_sma_matches_ta(series, period):
    c, _, _, close, _ = series
    assert_matches_ta(indicators.sma(c.close, period), ta.trend.SMAIndicator(close, period).sma_indicator())


@pytest.mark.parametrize("period", [7, 14])
def test_rsi_matches_ta(series, period):
    c, _, _, close, _ = series
    ours = indicators.rsi(c.close, period)
    assert_matches_ta(ours, ta.momentum.RSIIndicator(close, period).rsi())
    assert np.nanmin(ours) >= 0 and np.nanmax(ours) <= 100


@pytest.mark.parametrize("period", [10, 14])
def test_atr_matches_ta(series, period):
    c, high, low, close, _ = series
    ours = indicators.atr(c.high, c.low, c.close, period)
    assert np.isnan(ours[: period - 1]).all() and not np.isnan(ours[period - 1 :]).any()
    ref = ta.volatility.AverageTrueRange(high, low, close, period).average_true_range()
    assert_matches_ta(ours, ref, ta_warmup_value=0.0)


@pytest.mark.parametrize("period", [14, 20])
def test_adx_matches_ta(series, period):
    c, high, low, close, _ = series
    ours = indicators.adx(c.high, c.low, c.close, period)
    first = 2 * period - 1
    assert np.isnan(ours[:first]).all() and not np.isnan(ours[first:]).any()
    ref = ta.trend.ADXIndicator(high, low, close, period).adx()
    assert_matches_ta(ours, ref, ta_warmup_value=0.0)


def test_volume_ratio(xrp_5m):
    ratio = indicators.volume_ratio(xrp_5m.volume, 20)
    expected = xrp_5m.volume[19:] / pd.Series(xrp_5m.volume).rolling(20).mean().to_numpy()[19:]
    np.testing.assert_allclose(ratio[19:], expected, rtol=1e-12)
    assert np.isnan(ratio[:19]).all()


def test_short_input_is_all_nan():
    c = random_walk_candles(10)
    assert np.isnan(indicators.ema(c.close, 21)).all()
    assert np.isnan(indicators.atr(c.high, c.low, c.close, 14)).all()
    assert np.isnan(indicators.adx(c.high, c.low, c.close, 14)).all()
    assert len(indicators.rsi(np.empty(0), 14)) == 0


def test_bad_period_rejected():
    with pytest.raises(InvalidParameters):
        indicators.ema(np.ones(5), 0)
    with pytest.raises(InvalidParameters):
        indicators.support_resistance(np.ones(5), np.ones(5), np.ones(5), window=5, lookback=5)


def test_swing_points_simple_shape():
    values = np.array([1, 2, 3, 2, 1, 2, 5, 2, 1, 0, 1], dtype=float)
    highs = indicators.swing_points(values, 2, kind="high")
    lows = indicators.swing_points(values, 2, kind="low")
    assert np.flatnonzero(highs).tolist() == [2, 6]
    assert np.flatnonzero(lows).tolist() == [4]


def test_support_resistance_brackets_close(xrp_5m):
    c = xrp_5m
    support, resistance = indicators.support_resistance(c.high, c.low, c.close, window=3, lookback=96)
    has_s, has_r = ~np.isnan(support), ~np.isnan(resistance)
    assert has_s.mean() > 0.8 and has_r.mean() > 0.8
    assert (support[has_s] < c.close[has_s]).all()
    assert (resistance[has_r] > c.close[has_r]).all()


def test_support_resistance_matches_a_plain_loop():
    c = random_walk_candles(300, seed=3)
    window, lookback = 3, 40
    support, resistance = indicators.support_resistance(c.high, c.low, c.close, window=window, lookback=lookback)
    swing_high = indicators.swing_points(c.high, window, kind="high")
    swing_low = indicators.swing_points(c.low, window, kind="low")
    for i in range(len(c)):
        js = range(max(i - lookback, 0), i - window + 1)
        above = [c.high[j] for j in js if swing_high[j] and c.high[j] > c.close[i]]
        below = [c.low[j] for j in js if swing_low[j] and c.low[j] < c.close[i]]
        assert (min(above) if above else None) == (None if np.isnan(resistance[i]) else resistance[i])
        assert (max(below) if below else None) == (None if np.isnan(support[i]) else support[i])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(60, 199))
def test_no_look_ahead(seed, cut):
    """Values up to bar `cut` never change when later candles change."""
    full = random_walk_candles(200, seed=seed)
    other = random_walk_candles(200, seed=seed + 1)
    # same history up to `cut`, a different future after it
    mixed = [np.r_[getattr(full, k)[: cut + 1], getattr(other, k)[cut + 1 :]] for k in ("high", "low", "close")]
    for compute in (
        lambda h, lo, c: indicators.ema(c, 21),
        lambda h, lo, c: indicators.rsi(c, 14),
        lambda h, lo, c: indicators.atr(h, lo, c, 14),
        lambda h, lo, c: indicators.adx(h, lo, c, 14),
        lambda h, lo, c: indicators.support_resistance(h, lo, c, window=3, lookback=48)[0],
        lambda h, lo, c: indicators.support_resistance(h, lo, c, window=3, lookback=48)[1],
    ):
        a = compute(full.high, full.low, full.close)[: cut + 1]
        b = compute(*mixed)[: cut + 1]
        np.testing.assert_array_equal(a, b)
