"""The benchmarks' real multi-symbol workload: 12 real pairs resampled to 15m (and 1h), tiled to 120 series.

Source: the freqtrade test candles (verbatim copies, see data/README.md), read from the repository's data/ when it
has the file, else from /work/shared/data/ohlcv:

- 10 BTC-quoted spot pairs, 5m, 2018-01-10 .. 2018-01-30 (about 1,900 15m candles each; ADA and TRX have holes);
- XRP/USDT:USDT perpetual, 5m, 2021-11-15 .. 2021-11-21 (666 15m candles);
- XRP/ETH spot, 5m, 2019-10-11 .. 2019-10-13 (231 15m candles).

Every pair is resampled with ``engine.candles.resample`` (complete buckets only) to 15m and to 1h. ``tiled(120)``
returns 120 series: series ``k`` is pair ``k % 12``, copy ``k // 12``; copy ``j`` multiplies every price by
``1 + 0.37 * j`` (volumes unchanged), so the copies are distinct symbols with distinct float arithmetic but the same
real market structure and the same timestamps. With the default 120 series the workload is 200,590 15m candles.

``lengthened(series, factor)`` repeats a pair's real candles ``factor`` times end to end (each repetition continues
from the previous close, timestamps continue on the 15m grid): the same market structure, ``factor`` times longer,
for the linearity-in-candles measurement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.candles import Candles, resample

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = (ROOT / "data" / "ohlcv", Path("/work/shared/data/ohlcv"))
PAIRS: tuple[tuple[str, str], ...] = (
    ("ADA/BTC", "ADA_BTC-5m.feather"),
    ("DASH/BTC", "DASH_BTC-5m.feather"),
    ("ETC/BTC", "ETC_BTC-5m.feather"),
    ("ETH/BTC", "ETH_BTC-5m.feather"),
    ("LTC/BTC", "LTC_BTC-5m.feather"),
    ("NXT/BTC", "NXT_BTC-5m.feather"),
    ("TRX/BTC", "TRX_BTC-5m.feather"),
    ("XLM/BTC", "XLM_BTC-5m.feather"),
    ("XMR/BTC", "XMR_BTC-5m.feather"),
    ("ZEC/BTC", "ZEC_BTC-5m.feather"),
    ("XRP/USDT:USDT", "futures/XRP_USDT_USDT-5m-futures.feather"),
    ("XRP/ETH", "XRP_ETH-5m.feather"),
)
M15 = 900_000
SymbolData = tuple[Candles, Candles]


def _path(relative: str) -> Path | None:
    for folder in FOLDERS:
        if (folder / relative).exists():
            return folder / relative
    return None


def real_pairs() -> dict[str, SymbolData]:
    """The 12 real pairs as ``{symbol: (15m, 1h)}``; raises SystemExit naming the folders when a file is missing."""
    out: dict[str, SymbolData] = {}
    for symbol, relative in PAIRS:
        path = _path(relative)
        if path is None:
            raise SystemExit(f"benchmark data {relative} not found in {', '.join(map(str, FOLDERS))}")
        c5 = Candles.from_frame(pd.read_feather(path))
        out[symbol] = (resample(c5, 15), resample(c5, 60))
    return out


def _scaled(c: Candles, factor: float) -> Candles:
    return Candles(c.ts, c.open * factor, c.high * factor, c.low * factor, c.close * factor, c.volume)


def tiled(series: int = 120) -> dict[str, SymbolData]:
    """``series`` symbols cycling over the 12 real pairs (see the module docstring)."""
    pairs = list(real_pairs().items())
    out: dict[str, SymbolData] = {}
    for k in range(series):
        symbol, (c15, c1h) = pairs[k % len(pairs)]
        copy = k // len(pairs)
        factor = 1.0 + 0.37 * copy
        out[f"{symbol}#{copy}"] = (_scaled(c15, factor), _scaled(c1h, factor))
    return out


def lengthened(c15: Candles, factor: int) -> Candles:
    """The real candles repeated ``factor`` times end to end (prices chained, timestamps on the 15m grid)."""
    if factor == 1:
        return c15
    parts_o, parts_h, parts_l, parts_c, parts_v = [], [], [], [], []
    scale = 1.0
    for _ in range(factor):
        parts_o.append(c15.open * scale)
        parts_h.append(c15.high * scale)
        parts_l.append(c15.low * scale)
        parts_c.append(c15.close * scale)
        parts_v.append(c15.volume)
        scale *= float(c15.close[-1] / c15.open[0])
    n = len(c15) * factor
    ts = int(c15.ts[0]) + M15 * np.arange(n, dtype=np.int64)
    return Candles(
        ts,
        np.concatenate(parts_o),
        np.concatenate(parts_h),
        np.concatenate(parts_l),
        np.concatenate(parts_c),
        np.concatenate(parts_v),
    )


def candle_count(data: dict[str, SymbolData]) -> int:
    return sum(len(c15) for c15, _ in data.values())
