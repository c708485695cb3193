"""Order-flow aggregation speed: 10 exchanges × 20 symbols × 1,000 trades each per cycle (target < 100 ms).

Baseline in the same run: a straightforward per-pair Python loop over trade dicts (what a first version would do).
Also measured: the monitor's whole cycle after the fetch (``flow_cycle`` with an in-process cache) and, apart, the
parse of the raw ccxt trade dicts into arrays that the live source does. Every figure is a median of repeated runs.
Run: .venv/bin/python benchmarks/bench_flow.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import load_average, measure, result_line

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
        agg[0] += buy - sell
        agg[1] += total
    return {s: (v[0] / v[1] if v[1] else 0.0) for s, v in totals.items()}


def monitor_cycle_seconds(snapshots, raw, end, repeat=3):
    """``signals.flow_monitor.flow_cycle`` after the fetch (snapshot already parsed, in-process cache, 1m/5m/15m) and,
    apart, the parse of the raw ccxt dicts (``Trades.from_ccxt``) the live source does per pair."""
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.cache.backends.locmem import LocMemCache

    from signals.flow_monitor import FlowMonitorParams, flow_cycle
    from signals.flow_sources import FlowSnapshot

    parse_s, parsed = best_of(lambda: {pair: Trades.from_ccxt(rows) for pair, rows in raw.items()}, repeat=repeat)

    class ParsedSource:
        name, resolution_ms = "bench", 60_000

        def fetch(self, *, symbols, now_ms, lookback_ms):
            return FlowSnapshot(fetched_at_ms=now_ms, trades=parsed, books={k: v[1] for k, v in snapshots.items()})

    params = FlowMonitorParams(symbols=tuple(sorted({symbol for _, symbol in raw})))
    minute_end = end // 60_000 * 60_000 + 60_000  # every trade of the fixture lies in closed minutes before this
    runs = iter(range(1_000))

    def one_cycle():
        result = flow_cycle(
            now_ms=minute_end + 5_000, source=ParsedSource(), params=params, cache=LocMemCache(f"b{next(runs)}", {})
        )
        assert result.ran and set(result.pressures) == {"1m", "5m", "15m"}
        return result

    cycle_s, _ = best_of(one_cycle, repeat=repeat)
    return cycle_s, parse_s


def best_of(fn, repeat=7):
    """Median wall-clock seconds of ``repeat`` runs (after one warm-up run, ``report.measure``) and the last result."""
    timing = measure(fn, repeat)
    return timing.median, timing.result


def main() -> int:
    rng = np.random.default_rng(7)
    snapshots, raw = make_snapshots(rng)
    params = FlowParams(window_ms=60_000, taker_weight=1.0)
    fast_s, fast = best_of(lambda: aggregate_pressure(snapshots, end_ms=END, params=params))
    naive_s, slow = best_of(lambda: naive(raw, END, 60_000), repeat=3)
    worst = max(abs(fast[s].score - slow[s]) for s in slow)
    assert worst < 1e-9, worst
    print(f"pairs={EXCHANGES * SYMBOLS} trades={EXCHANGES * SYMBOLS * TRADES}; {load_average()}")
    print(f"vectorised aggregate (taker + book): {fast_s * 1000:.1f} ms per cycle, median of 7 (goal < 100 ms)")
    print(f"naive per-trade loop (taker only):   {naive_s * 1000:.1f} ms per cycle, median of 3")
    print(f"speed-up: {naive_s / fast_s:.1f}x; max score difference {worst:.2e}")
    cycle_s, parse_s = monitor_cycle_seconds(snapshots, raw, END)
    print(
        f"monitor cycle after the fetch (buckets, cache state, 1m/5m/15m scores, filters): {cycle_s * 1000:.1f} ms "
        f"({cycle_s / naive_s:.2f}x the naive 1-window loop)"
    )
    print(
        f"parsing the {EXCHANGES * SYMBOLS * TRADES} ccxt trade dicts into arrays (source side): {parse_s * 1000:.1f} ms"
    )
    ok = fast_s < 0.100
    print(
        result_line(
            "order-flow aggregation, 10 exchanges x 20 symbols x 1,000 trades",
            f"{fast_s * 1000:.1f} ms per cycle (median of 7); monitor cycle {cycle_s * 1000:.1f} ms",
            f"{naive_s / fast_s:.1f}x faster than a per-trade Python loop ({naive_s * 1000:.1f} ms, same run)",
            "< 100 ms",
            ok,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
