"""Speed of the signal path, compiled loops against the engine's own NumPy fallback measured in the same run.

1. ``engine.scan.scan_many`` over 200 symbols x 1000 15m candles (+ their 1h candles), random walks. Goal: median
   < 150 ms on one core (BLAS limited to one thread; the compiled loops use none).
2. ``entry_signals`` + ``quorum_many`` (the backtest's signal path) over one 200,000-candle series. Goal: >= 2,000,000
   candles/s, so that signals take at most half of the backtest's 1,000,000 candles/s budget.

Baseline for both: the same call inside ``engine.compiled.numpy_only()`` (the pure-NumPy path used without numba).
Run: .venv/bin/python benchmarks/bench_engine_scan.py   (exit status 1 when a goal is missed)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from report import load_average, measure, result_line
from threadpoolctl import threadpool_limits

from engine import compiled
from engine.candles import Candles, resample
from engine.confirmation import quorum_many
from engine.scan import scan_many
from engine.strategy import StrategyParams, entry_signals

SYMBOLS = 200
CANDLES = 1000
SCAN_GOAL_S = 0.150
SIGNALS_GOAL = 2_000_000
M15 = 900_000
RUNS = 7


def random_walk(n: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    vol = 0.003 + 0.0002 * (seed % 15)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0, vol / 2, (2, n))) * close
    ts = 1_700_000_100_000 + M15 * np.arange(n, dtype=np.int64)
    return Candles(
        ts,
        open_,
        np.maximum(open_, close) + wick[0],
        np.minimum(open_, close) - wick[1],
        close,
        rng.lognormal(10, 0.5, n),
    )


def both(fn, runs: int = RUNS):
    fast = measure(fn, runs)
    with compiled.numpy_only():
        slow = measure(fn, runs)
    return fast, slow


def main() -> int:
    print(f"compiled loops: {compiled.enabled()}; {load_average()}")
    params = StrategyParams()
    universe = {}
    for i in range(SYMBOLS):
        c15 = random_walk(CANDLES, i)
        universe[f"S{i}/USDT:USDT"] = (c15, resample(c15, 60))
    now = 1_700_000_100_000 + M15 * CANDLES
    long_series = random_walk(200_000, 42)
    long_1h = resample(long_series, 60)

    def signal_path():
        signals = entry_signals(long_series, params)
        idx = signals.signal_indices
        return quorum_many(long_1h, signals.side[idx], long_series.ts[idx] + M15, params)

    with threadpool_limits(limits=1):
        scan_fast, scan_slow = both(lambda: scan_many(universe, params, now_ms=now))
        sig_fast, sig_slow = both(signal_path)
    assert [c.symbol for c in scan_fast.result.candidates] == [c.symbol for c in scan_slow.result.candidates]
    np.testing.assert_array_equal(sig_fast.result.ok, sig_slow.result.ok)

    print(f"scan_many {SYMBOLS} x {CANDLES} (+1h), compiled: {scan_fast.describe()}")
    print(f"scan_many, NumPy fallback:            {scan_slow.describe()}")
    n = len(long_series)
    print(f"entry_signals + quorum_many over {n:,} candles, compiled: {sig_fast.describe(n, 'candles')}")
    print(f"entry_signals + quorum_many, NumPy fallback:  {sig_slow.describe(n, 'candles')}")
    scan_ok = scan_fast.median < SCAN_GOAL_S
    sig_ok = n / sig_fast.median >= SIGNALS_GOAL
    print(
        result_line(
            f"scan {SYMBOLS} symbols x {CANDLES} candles (15m + 1h), one core",
            f"{scan_fast.median * 1000:.0f} ms median of {RUNS} (CPU {scan_fast.median_cpu * 1000:.0f} ms)",
            f"{scan_slow.median / scan_fast.median:.1f}x faster than the NumPy fallback "
            f"({scan_slow.median * 1000:.0f} ms, same run)",
            f"< {SCAN_GOAL_S * 1000:.0f} ms",
            scan_ok,
        )
    )
    print(
        result_line(
            "signal path (entry_signals + 1h quorum) on one long series",
            f"{n / sig_fast.median:,.0f} candles/s median of {RUNS}",
            f"{sig_slow.median / sig_fast.median:.1f}x the NumPy fallback ({n / sig_slow.median:,.0f} candles/s)",
            f">= {SIGNALS_GOAL:,} candles/s",
            sig_ok,
        )
    )
    return 0 if scan_ok and sig_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
