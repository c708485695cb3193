"""Order-flow aggregation speed: 10 exchanges × 20 symbols × 1,000 trades each per cycle (target < 100 ms).

Baseline in the same run: a straightforward per-pair Python loop over trade dicts (what a first version would do).
Run: .venv/bin/python benchmarks/bench_flow.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.flow import FlowParams, OrderBook, Trades, aggregate_pressure

EXCHANGES, SYMBOLS, TRADES = 10, 20, 1_000
END = 1_700_000_060_000


def make_snapshots(rng):
    snapshots, raw = {}, {}
    for e in range(EXCHANGES):
        for s in range(SYMBOLS):
            ts = END - rng.integers(0, 60_000, TRADES)
            price = 100 + rng.normal(0, 0.5, TRADES)
            amount = rng.exponential(1.0, TRADES)
            side = rng.choice(np.array([1, -1], dtype=np.int8), TRADES)
            bids = np.column_stack([100 - np.arange(1, 51) * 0.02, rng.exponential(5, 50)])
            asks = np.column_stack([100 + np.arange(1, 51) * 0.02, rng.exponential(5, 50)])
            snapshots[(f"ex{e}", f"SYM{s}/USDT")] = (Trades(ts, price, amount, side), OrderBook(bids, asks))
            raw[(f"ex{e}", f"SYM{s}/USDT")] = [
                {"timestamp": int(t), "price": float(p), "amount": float(a), "side": "buy" if d > 0 else "sell"}
                for t, p, a, d in zip(ts, price, amount, side, strict=True)
            ]
    return snapshots, raw


def naive(raw, end, window):
    totals = {}
    for (_, symbol), rows in raw.items():
        buy = sell = 0.0
        for t in rows:
            if end - window <= t["timestamp"] < end:
                value = t["price"] * t["amount"]
                if t["side"] == "buy":
                    buy += value
                else:
                    sell += value
        total = buy + sell
        agg = totals.setdefault(symbol, [0.0, 0.0])
        agg[0] += (buy - sell)
        agg[1] += total
    return {s: (v[0] / v[1] if v[1] else 0.0) for s, v in totals.items()}


def best_of(fn, repeat=7):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    rng = np.random.default_rng(7)
    snapshots, raw = make_snapshots(rng)
    params = FlowParams(window_ms=60_000, taker_weight=1.0)
    fast_s, fast = best_of(lambda: aggregate_pressure(snapshots, end_ms=END, params=params))
    naive_s, slow = best_of(lambda: naive(raw, END, 60_000), repeat=3)
    worst = max(abs(fast[s].score - slow[s]) for s in slow)
    assert worst < 1e-9, worst
    print(f"pairs={EXCHANGES * SYMBOLS} trades={EXCHANGES * SYMBOLS * TRADES}")
    print(f"vectorised aggregate (taker + book): {fast_s * 1000:.1f} ms per cycle (target < 100 ms)")
    print(f"naive per-trade loop (taker only):   {naive_s * 1000:.1f} ms per cycle")
    print(f"speed-up: {naive_s / fast_s:.1f}x; max score difference {worst:.2e}")


if __name__ == "__main__":
    main()
