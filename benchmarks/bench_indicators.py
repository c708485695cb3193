"""The engine's EMA and Wilder RSI against pandas (``ewm(adjust=False)``, what ``ta`` uses), in the same run, at the
lengths the platform uses: 1,000 candles (a live scan's look-back) and 200,000 candles (a long backtest series).

Each figure is the median of 15 runs of the call, for the compiled path (numba) and the NumPy fallback
(``engine.compiled.numpy_only()``); the values are checked equal to pandas' to 1e-9 relative. Goal: the compiled EMA
at least as fast as pandas' ``ewm`` at both lengths (the claim in ``engine/indicators.py``).
Run: .venv/bin/python benchmarks/bench_indicators.py   (exit status 1 when the goal is missed)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from report import load_average, measure, result_line
from threadpoolctl import threadpool_limits

from engine import compiled, indicators

RUNS = 15


def pandas_ema(close: pd.Series, period: int) -> pd.Series:
    return close.ewm(span=period, adjust=False).mean()


def main() -> int:
    print(f"compiled loops: {compiled.enabled()}; {load_average()}")
    rng = np.random.default_rng(5)
    ok = True
    lines = []
    with threadpool_limits(limits=1):
        for n in (1_000, 200_000):
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
            series = pd.Series(close)
            ours = measure(lambda close=close: indicators.ema(close, 21), RUNS)
            with compiled.numpy_only():
                fallback = measure(lambda close=close: indicators.ema(close, 21), RUNS)
            theirs = measure(lambda series=series: pandas_ema(series, 21), RUNS)
            expected = theirs.result.to_numpy()
            np.testing.assert_allclose(ours.result[20:], expected[20:], rtol=1e-9)
            np.testing.assert_allclose(fallback.result[20:], expected[20:], rtol=1e-9)
            print(
                f"EMA(21), {n:,} candles: compiled {ours.median * 1e6:,.0f} us, NumPy fallback "
                f"{fallback.median * 1e6:,.0f} us, pandas ewm {theirs.median * 1e6:,.0f} us (medians of {RUNS})"
            )
            rsi = measure(lambda close=close: indicators.rsi(close, 14), RUNS)
            print(f"RSI(14), {n:,} candles: compiled {rsi.median * 1e6:,.0f} us")
            good = ours.median <= theirs.median
            ok &= good
            lines.append(
                result_line(
                    f"EMA(21) on {n:,} candles",
                    f"{ours.median * 1e6:,.0f} us compiled, {fallback.median * 1e6:,.0f} us NumPy fallback",
                    f"{theirs.median / ours.median:.1f}x pandas ewm (compiled), "
                    f"{theirs.median / fallback.median:.2f}x (fallback); pandas {theirs.median * 1e6:,.0f} us",
                    "compiled at least as fast as pandas ewm",
                    good,
                )
            )
    for line in lines:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
