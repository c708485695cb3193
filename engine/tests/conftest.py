"""Shared fixtures for the engine tests: real candles from /work/shared/data plus synthetic series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.candles import Candles

SHARED_OHLCV = Path("/work/shared/data/ohlcv")
BUNDLED_OHLCV = Path(__file__).resolve().parents[2] / "data" / "ohlcv"  # verbatim copies (data/README.md)
FIXTURE_OHLCV = Path(__file__).resolve().parent / "fixtures" / "ohlcv"  # verbatim copies (fixtures/README.md)


def load_feather(relative: str) -> Candles:
    """Real candles: the copy bundled in the repository (data/, else engine/tests/fixtures/), else the shared folder
    (the test skips when none has it)."""
    for folder in (BUNDLED_OHLCV, FIXTURE_OHLCV, SHARED_OHLCV):
        path = folder / relative
        if path.exists():
            break
    else:
        pytest.skip(f"market data not available: {path}")
    return Candles.from_frame(pd.read_feather(path))


@pytest.fixture(scope="session")
def xrp_5m() -> Candles:
    """XRP/USDT:USDT perpetual 5m candles, 1999 rows without gaps (freqtrade test data)."""
    return load_feather("futures/XRP_USDT_USDT-5m-futures.feather")


@pytest.fixture(scope="session")
def eth_btc_5m() -> Candles:
    """ETH/BTC 5m candles, 5760 rows without gaps."""
    return load_feather("ETH_BTC-5m.feather")


@pytest.fixture(scope="session")
def ada_btc_5m() -> Candles:
    """ADA/BTC 5m candles with 40 missing candles in 5 holes."""
    return load_feather("ADA_BTC-5m.feather")


def random_walk_candles(
    n: int,
    *,
    seed: int = 0,
    start_ms: int = 1_700_000_100_000,
    step_ms: int = 900_000,
    drift: float = 0.0,
    vol: float = 0.004,
    price: float = 100.0,
) -> Candles:
    """Synthetic OHLCV: a geometric random walk with wicks and lognormal volume (start is on the 15m grid)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(drift, vol, n)
    close = price * np.exp(np.cumsum(returns))
    open_ = np.r_[price, close[:-1]]
    wick = np.abs(rng.normal(0, vol / 2, (2, n))) * close
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    volume = rng.lognormal(10, 0.5, n)
    ts = start_ms + step_ms * np.arange(n, dtype=np.int64)
    return Candles(ts, open_, high, low, close, volume)
