from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.candles import Candles, check_candles, infer_timeframe_ms, resample, timeframe_to_ms
from engine.errors import InvalidParameters
from engine.tests.conftest import random_walk_candles

FIVE_MIN = 300_000


def test_from_ohlcv_keeps_exact_int_timestamps_and_floats():
    rows = [[1_700_000_100_000, 1, 2, 0.5, 1.5, 10], [1_700_001_000_000, 1.5, 2.5, 1, 2, None]]
    c = Candles.from_ohlcv(rows)
    assert c.ts.dtype == np.int64 and c.ts.tolist() == [1_700_000_100_000, 1_700_001_000_000]
    assert c.close.dtype == np.float64 and c.close.tolist() == [1.5, 2.0]
    assert np.isnan(c.volume[1])
    assert len(c) == 2


def test_candles_are_immutable_and_copied():
    ts = np.array([0, 900_000])
    close = np.array([1.0, 2.0])
    c = Candles(ts, close, close, close, close, close)
    close[0] = 99.0
    assert c.close[0] == 1.0
    with pytest.raises(ValueError):
        c.close[0] = 5.0


def test_mismatched_lengths_rejected():
    with pytest.raises(InvalidParameters, match="differ in length"):
        Candles(np.arange(3), np.ones(3), np.ones(3), np.ones(2), np.ones(3), np.ones(3))


def test_frame_round_trip_matches_feather(xrp_5m):
    frame = xrp_5m.to_frame()
    assert list(frame.columns) == ["date", "open", "high", "low", "close", "volume"]
    assert str(frame["date"].dt.tz) == "UTC"
    back = Candles.from_frame(frame)
    np.testing.assert_array_equal(back.ts, xrp_5m.ts)
    np.testing.assert_array_equal(back.close, xrp_5m.close)
    assert xrp_5m.ts[0] == pd.Timestamp("2021-11-15 00:00", tz="UTC").value // 1_000_000


def test_tail_and_slice_until():
    c = random_walk_candles(10)
    assert len(c.tail(3)) == 3 and c.tail(3).ts[0] == c.ts[7]
    assert len(c.tail(50)) == 10
    assert len(c.slice_until(c.ts[4])) == 5
    assert len(c.slice_until(c.ts[4] - 1)) == 4
    assert len(c.slice_until(c.ts[0] - 1)) == 0
    # closed_at drops the candle still forming at `now`
    now = int(c.ts[-1]) + 899_999
    assert len(c.closed_at(now, 900_000)) == 9
    assert len(c.closed_at(now + 1, 900_000)) == 10


def test_timeframes():
    assert timeframe_to_ms("15m") == 900_000 and timeframe_to_ms("1h") == 3_600_000
    with pytest.raises(InvalidParameters):
        timeframe_to_ms("7m")
    assert infer_timeframe_ms(random_walk_candles(5)) == 900_000


def test_resample_matches_pandas_complete_buckets_only(ada_btc_5m):
    hourly = resample(ada_btc_5m, 60)
    frame = ada_btc_5m.to_frame().set_index("date")
    grouped = frame.resample("1h", label="left", closed="left")
    ref = grouped.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    ref = ref[grouped["close"].count() == 12]
    assert len(hourly) == len(ref) == 474  # 5 holes remove the hours they touch, plus partial edges
    np.testing.assert_array_equal(hourly.ts, ref.index.as_unit("ms").asi8)
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(hourly, name), ref[name].to_numpy())
    np.testing.assert_allclose(hourly.volume, ref["volume"].to_numpy(), rtol=1e-12)


def test_resample_drops_forming_last_bucket():
    c = random_walk_candles(4 * 5 + 3)  # five full hours of 15m, then three candles of the sixth
    hourly = resample(c, 60)
    assert all(int(ts) % 3_600_000 == 0 for ts in hourly.ts)
    last_complete_close = hourly.ts[-1] + 3_600_000
    assert last_complete_close <= c.ts[-1] + 900_000
    for i, ts in enumerate(hourly.ts):
        members = (c.ts >= ts) & (c.ts < ts + 3_600_000)
        assert members.sum() == 4
        assert hourly.open[i] == c.open[members][0] and hourly.close[i] == c.close[members][-1]
        assert hourly.high[i] == c.high[members].max() and hourly.low[i] == c.low[members].min()


def test_resample_rejects_non_multiple():
    with pytest.raises(InvalidParameters):
        resample(random_walk_candles(10), 20)  # 20m is not a multiple of 15m


def test_check_candles_clean_series(xrp_5m):
    report = check_candles(xrp_5m, FIVE_MIN)
    assert report.ok and report.reason == "" and report.rows == 1999


def test_check_candles_finds_gaps_in_real_data(ada_btc_5m):
    report = check_candles(ada_btc_5m, FIVE_MIN)
    assert not report.ok
    assert (report.gaps, report.missing_candles) == (5, 40)
    assert "gap" in report.reason


def test_check_candles_finds_each_problem():
    c = random_walk_candles(40)
    ts = c.ts.copy()
    ts[5] = ts[4]  # duplicate
    ts[20], ts[21] = ts[21], ts[20]  # step back
    close = c.close.copy()
    close[30] = np.nan
    volume = c.volume.copy()
    volume[10:20] = 0.0  # 25% zero volume
    high = c.high.copy()
    high[35] = c.low[35] * 0.5  # high below low
    bad = Candles(ts, c.open, high, c.low, close, volume)
    report = check_candles(bad, 900_000)
    assert report.duplicates == 1
    assert report.non_monotonic == 1
    assert report.nan_rows == 1
    assert report.zero_volume == 10
    assert report.invalid_ohlc >= 1
    assert len(report.problems) >= 5


def test_little_zero_volume_is_only_a_warning():
    c = random_walk_candles(100)
    volume = c.volume.copy()
    volume[3] = 0.0
    report = check_candles(Candles(c.ts, c.open, c.high, c.low, c.close, volume), 900_000)
    assert report.ok and report.warnings == ("1 zero-volume candle(s)",)


def test_check_candles_misaligned_and_too_short():
    c = random_walk_candles(10, start_ms=1_700_000_100_000 + 60_000)
    report = check_candles(c, 900_000, min_rows=20)
    assert report.misaligned == 10
    assert any("only 10 candles" in p for p in report.problems)
