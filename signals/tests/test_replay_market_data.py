"""Replay market data over the bundled candles: nothing from the future, resampling faithful to the exchange."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from engine.candles import TIMEFRAME_MS, Candles
from signals.market_data import SymbolUnavailable, get_market_data
from signals.market_data.replay import ReplayMarketData, load_dataset

pytestmark = pytest.mark.usefixtures("isolated_signals_env")

XRP = "XRP/USDT:USDT"
DATASET = None


def _dataset():
    return load_dataset(str(settings.REPLAY_DATA_DIR))


def test_get_market_data_picks_replay_from_settings_once():
    market_data = get_market_data()
    assert isinstance(market_data, ReplayMarketData)
    assert get_market_data() is market_data


def test_bundled_data_is_small_and_complete():
    files = list(settings.REPLAY_DATA_DIR.rglob("*.feather"))
    assert sum(f.stat().st_size for f in files) < 3_000_000
    assert {m.info.symbol for m in _dataset().markets.values()} == {
        XRP,
        "ETH/BTC",
        "LTC/BTC",
        "ETC/BTC",
        "XLM/BTC",
        "NXT/BTC",
        "DASH/BTC",
    }
    assert _dataset().market(XRP).info.tick_size == Decimal("0.0001")


def test_resampled_1h_matches_pandas_and_tracks_the_exchange_1h_candles():
    """5m → 1h with engine.candles equals pandas' resample exactly, and stays within 0.5% of the native 1h file.

    The native 1h file was recorded separately from the 5m one (prices differ in the 4th decimal), so it is a sanity
    bound, not an identity.
    """
    frame = pd.read_feather(settings.REPLAY_DATA_DIR / "ohlcv/futures/XRP_USDT_USDT-5m-futures.feather")
    reference = (
        frame.set_index("date")
        .resample("1h", label="left", closed="left")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    )
    counts = frame.set_index("date").resample("1h", label="left", closed="left")["close"].count()
    reference = reference[counts == 12]
    resampled = _dataset().candles(XRP, "1h")
    reference_ts = (reference.index.asi8 // 1_000_000).astype(np.int64)
    common, ref_index, res_index = np.intersect1d(reference_ts, resampled.ts, return_indices=True)
    assert len(common) == len(resampled) >= 160
    for field in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(
            getattr(resampled, field)[res_index], reference[field].to_numpy()[ref_index], rtol=1e-12
        )

    native = Candles.from_frame(
        pd.read_feather(settings.REPLAY_DATA_DIR / "ohlcv/futures/XRP_USDT_USDT-1h-futures.feather")
    )
    common, native_index, resampled_index = np.intersect1d(native.ts, resampled.ts, return_indices=True)
    assert len(common) == len(native) == 100
    for field in ("open", "high", "low", "close"):
        np.testing.assert_allclose(
            getattr(resampled, field)[resampled_index], getattr(native, field)[native_index], rtol=5e-3
        )


@hypothesis_settings(max_examples=60, deadline=None)
@given(offset_minutes=st.integers(min_value=0, max_value=7 * 24 * 60), timeframe=st.sampled_from(["5m", "15m", "1h"]))
def test_never_serves_a_candle_that_has_not_closed(offset_minutes, timeframe):
    market_data = ReplayMarketData(_dataset())
    start = _dataset().market(XRP).listed_from_ms
    now_ms = market_data.advance_to(start + offset_minutes * 60_000)
    candles = market_data.ohlcv(XRP, timeframe, 10_000)
    step = TIMEFRAME_MS[timeframe]
    if len(candles):
        assert int(candles.ts[-1]) + step <= now_ms
        full = _dataset().candles(XRP, timeframe)
        # ...and every candle that has closed is served (nothing held back either)
        assert len(candles) == int(np.count_nonzero(full.ts + step <= now_ms))
        price = market_data.last_price(XRP)
        last_closed_5m = _dataset().market(XRP).candles_5m.closed_at(now_ms, 300_000)
        assert price == Decimal(repr(float(last_closed_5m.close[-1])))


def test_limit_returns_the_latest_closed_candles():
    market_data = ReplayMarketData(_dataset())
    market_data.advance_to(datetime(2021, 11, 18, 12, 7, tzinfo=UTC))
    candles = market_data.ohlcv(XRP, "15m", 4)
    assert [pd.Timestamp(t, unit="ms", tz="UTC").strftime("%H:%M") for t in candles.ts] == [
        "11:00",
        "11:15",
        "11:30",
        "11:45",
    ]


def test_funding_rate_is_the_last_published_one():
    market_data = ReplayMarketData(_dataset())
    market_data.advance_to(datetime(2021, 11, 17, 23, 0, tzinfo=UTC))
    assert market_data.funding_rate(XRP) is None  # the funding file starts 2021-11-18 00:00
    market_data.advance_to(datetime(2021, 11, 18, 8, 0, tzinfo=UTC))  # stamped 08:00:00.007, aligned to 08:00
    assert market_data.funding_rate(XRP) == Decimal("0.0001")
    assert market_data.funding_rate("ETH/BTC") is None  # spot: no funding


def test_markets_listed_while_their_data_lasts_and_the_clock_jumps_the_hole():
    market_data = ReplayMarketData(_dataset())
    market_data.advance_to(datetime(2018, 1, 20, tzinfo=UTC))
    assert XRP not in {m.symbol for m in market_data.markets()}
    assert "ETH/BTC" in {m.symbol for m in market_data.markets()}
    market_data.advance_to(datetime(2018, 1, 30, 4, 45, tzinfo=UTC))
    now = market_data.step()  # the 2018 data ends at 04:55: the next step jumps to the 2021 perpetual
    assert now == _dataset().market(XRP).listed_from_ms
    assert [m.symbol for m in market_data.markets()] == [XRP]


def test_unknown_symbol_is_unavailable():
    market_data = ReplayMarketData(_dataset())
    with pytest.raises(SymbolUnavailable):
        market_data.ohlcv("DOGE/USDT:USDT", "15m", 10)


def test_replay_clock_is_shared_through_the_cache():
    first = ReplayMarketData(_dataset())
    second = ReplayMarketData(_dataset())  # e.g. another process on the same Redis
    first.advance_to(datetime(2021, 11, 19, tzinfo=UTC))
    assert second.now() == datetime(2021, 11, 19, tzinfo=UTC)
