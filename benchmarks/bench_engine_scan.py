"""Speed of the signal path: scan_many over 200 symbols x 1000 15m candles (+ their 1h candles), and the
vectorised entry_signals + 1h quorum over a long series (the backtest path).

Budget: the scan must finish in < 1 s on 2 cores. Exits non-zero when it does not.
Run: .venv/bin/python benchmarks/bench_engine_scan.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from engine.candles import Candles, resample
from engine.confirmation import quorum_many
from engine.scan import scan_many
from engine.strategy import StrategyParams, entry_signals

SYMBOLS = 200
CANDLES = 1000
BUDGET_SECONDS = 1.0
M15 = 900_000


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


def main() -> int:
    params = StrategyParams()
    universe = {}
    for i in range(SYMBOLS):
        c15 = random_walk(CANDLES, i)
        universe[f"S{i}/USDT:USDT"] = (c15, resample(c15, 60))
    now = 1_700_000_100_000 + M15 * CANDLES
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        result = scan_many(universe, params, now_ms=now)
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    print(
        f"scan_many: {SYMBOLS} symbols x {CANDLES} 15m candles (+1h): median {median * 1000:.0f} ms, "
        f"best {min(timings) * 1000:.0f} ms, {len(result.candidates)} candidates, {len(result.skipped)} skipped"
    )

    long_series = random_walk(200_000, 42)
    started = time.perf_counter()
    signals = entry_signals(long_series, params)
    idx = signals.signal_indices
    confirmed = quorum_many(resample(long_series, 60), signals.side[idx], long_series.ts[idx] + M15, params)
    elapsed = time.perf_counter() - started
    print(
        f"entry_signals + quorum_many: {len(long_series)} 15m candles in {elapsed * 1000:.0f} ms "
        f"({len(long_series) / elapsed / 1e6:.2f} M candles/s), {len(idx)} signals, {int(confirmed.ok.sum())} confirmed"
    )
    if median > BUDGET_SECONDS:
        print(f"FAIL: scan median {median:.2f} s exceeds the {BUDGET_SECONDS:.1f} s budget")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
