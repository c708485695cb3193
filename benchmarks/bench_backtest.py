"""Backtester benchmark: one year of 15m candles x 20 symbols (700,800 candles), indicators included.

Run:  .venv/bin/python benchmarks/bench_backtest.py [--symbols 20] [--days 365] [--processes 2] [--ref-days 365]

Data: built from REAL candles (nothing is copied into the repository): the 5m files under
/work/shared/data/ohlcv (XRP/USDT:USDT perpetual + the BTC-quoted spot pairs) are resampled to 15m; each
synthetic symbol tiles the real 15m log-returns of one source file (a different source and a different random
offset per symbol) until it spans the requested days, multiplies every return by a per-symbol scale
(0.8-1.6) and adds small noise, and rebuilds open/high/low relative to the close exactly as in the real candle
(wick and body ratios kept), volume tiled with a lognormal factor. Prices start at 0.5-50000 so rounding and
scale effects show up.

Printed: the naive per-bar baseline (the live ``evaluate_latest`` called at every closed candle of the first symbol,
``--naive-bars`` candles, signals only) and the fast engine's candles/s (end to end: signals + 1h confirmation + exits + sizing + equity, using
``--processes`` worker processes), the reference bar-by-bar simulator's candles/s measured in the same run on the
first symbol over ``--ref-days`` days (checked to give the same trades as the fast engine on that slice), their
ratio, and peak memory (this process and the largest worker, from getrusage). The machine is shared, so the same
runs are also measured in CPU seconds (this process + its worker processes, from getrusage): candles per CPU-second
x cores is what the engine does on dedicated cores, and the CPU-time ratio fast/reference is free of the load.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backtest import BacktestConfig, run_backtest
from engine.candles import Candles, resample
from engine.exits import ExitRules
from engine.strategy import StrategyParams

SHARED = Path("/work/shared/data/ohlcv")
SOURCES = [
    "futures/XRP_USDT_USDT-5m-futures.feather",
    "ETH_BTC-5m.feather",
    "LTC_BTC-5m.feather",
    "XLM_BTC-5m.feather",
    "ETC_BTC-5m.feather",
    "NXT_BTC-5m.feather",
    "DASH_BTC-5m.feather",
    "ZEC_BTC-5m.feather",
    "XMR_BTC-5m.feather",
]
START_MS = 1_672_531_200_000  # 2023-01-01 00:00 UTC
BAR_MS = 900_000


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


BUNDLED = Path(__file__).resolve().parents[1] / "data" / "ohlcv"


def real_15m(relative: str) -> Candles | None:
    """The repository's copy (data/) when it has the file, else the shared folder; None when neither has it."""
    for folder in (BUNDLED, SHARED):
        if (folder / relative).exists():
            return resample(Candles.from_frame(pd.read_feather(folder / relative)), 15)
    return None


def synthetic_symbol(src: Candles, n: int, rng: np.random.Generator, price0: float) -> Candles:
    close = src.close
    rets = np.diff(np.log(close))
    body_open = np.log(src.open[1:] / close[:-1])  # gap between previous close and open
    up_wick = np.log(src.high[1:] / np.maximum(src.open[1:], close[1:]))
    down_wick = np.log(np.minimum(src.open[1:], close[1:]) / src.low[1:])
    vol = src.volume[1:]
    reps = n // len(rets) + 2
    offset = int(rng.integers(0, len(rets)))
    take = (np.arange(n) + offset) % len(rets)
    del reps
    scale = rng.uniform(0.8, 1.6)
    r = rets[take] * scale + rng.normal(0, 0.0005, n)
    c = price0 * np.exp(np.cumsum(r))
    prev_c = np.r_[price0, c[:-1]]
    o = prev_c * np.exp(body_open[take] * scale)
    h = np.maximum(o, c) * np.exp(np.abs(up_wick[take]) * scale)
    lo = np.minimum(o, c) * np.exp(-np.abs(down_wick[take]) * scale)
    v = vol[take] * rng.lognormal(0, 0.3, n)
    ts = START_MS + BAR_MS * np.arange(n, dtype=np.int64)
    return Candles(ts, o, h, lo, c, v)


def build(symbols: int, days: int, seed: int = 7) -> dict[str, tuple[Candles, None]]:
    rng = np.random.default_rng(seed)
    sources = [c for c in (real_15m(s) for s in SOURCES) if c is not None]
    if not sources:
        raise SystemExit(f"benchmark needs real candles in {BUNDLED} or {SHARED}")
    n = days * 96
    data = {}
    for k in range(symbols):
        price0 = float(10 ** rng.uniform(-0.3, 4.7))
        data[f"SYN{k:02d}/USDT:USDT"] = (synthetic_symbol(sources[k % len(sources)], n, rng, price0), None)
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--ref-days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--naive-bars", type=int, default=2000, help="candles for the naive per-bar baseline")
    args = ap.parse_args()

    data = build(args.symbols, args.days)
    total = sum(len(c) for c, _ in data.values())
    params = StrategyParams()
    config = BacktestConfig(
        exit_rules=ExitRules(
            trailing_mode="atr", trailing_atr_mult=1.5, trailing_activation_r=1.0, expiry_seconds=24 * 3600
        )
    )
    run_backtest(data, params, config, processes=args.processes)  # warm-up (imports, pool start-up paths)
    times = []
    cpu_times = []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), cpu_seconds()
        result = run_backtest(data, params, config, processes=args.processes)
        times.append(time.perf_counter() - t0)
        cpu_times.append(cpu_seconds() - c0)  # this process + its (reaped) worker processes
    fast_s = min(times)
    fast_cps = total / fast_s
    fast_cpu = min(cpu_times)
    m = result.metrics()

    # the reference simulator, same run, on the first symbol over --ref-days days
    from engine.tests.reference_backtest import reference_backtest

    first = next(iter(data))
    c15 = data[first][0]
    ref_n = min(len(c15), args.ref_days * 96)
    ref_data = {first: (c15._take(slice(0, ref_n)), None)}
    t0, c0 = time.perf_counter(), cpu_seconds()
    ref_trades, _, _ = reference_backtest(ref_data, params, config)
    ref_s = time.perf_counter() - t0
    ref_cpu = cpu_seconds() - c0
    ref_cps = ref_n / ref_s
    fast_slice = run_backtest(ref_data, params, config)
    same = [(t.entry_ts, t.exit_ts, t.reasons) for t in fast_slice.trades] == [
        (r["entry_ts"], r["exit_ts"], tuple(f[1] for f in r["fills"])) for r in ref_trades
    ] and all(abs(t.net_pnl - r["net"]) < 1e-9 for t, r in zip(fast_slice.trades, ref_trades, strict=True))

    # naive per-bar baseline, same run: what a loop over the live path would do — call the scanner's
    # engine.strategy.evaluate_latest at every closed candle (signals only: no exits, sizing or equity)
    from engine.strategy import bars_needed, evaluate_latest

    c1h_first = resample(c15, 60, source_timeframe_ms=BAR_MS)
    naive_from = bars_needed(params)
    naive_n = min(args.naive_bars, len(c15) - naive_from)
    t0, c0 = time.perf_counter(), cpu_seconds()
    naive_signals = 0
    for i in range(naive_from, naive_from + naive_n):
        naive_signals += evaluate_latest(c15, c1h_first, params, now_ms=int(c15.ts[i]) + BAR_MS) is not None
    naive_s = time.perf_counter() - t0
    naive_cpu = cpu_seconds() - c0

    # breakdown (single process): the strategy's signal computation vs the backtester's own work
    from threadpoolctl import threadpool_limits

    import engine.backtest as bt
    from engine.strategy import entry_signals

    with threadpool_limits(limits=1, user_api="blas"):  # as inside run_backtest
        t0 = time.perf_counter()
        cached = {id(c): entry_signals(c, params) for c, _ in data.values()}
        signals_s = time.perf_counter() - t0
    real_entry_signals = bt.entry_signals
    bt.entry_signals = lambda c, p: cached[id(c)]
    try:
        t0 = time.perf_counter()
        own = run_backtest(data, params, config, processes=1)
        own_s = time.perf_counter() - t0
    finally:
        bt.entry_signals = real_entry_signals
    assert [t.net_pnl for t in own.trades] == [t.net_pnl for t in result.trades]

    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"candles: {total:,} ({args.symbols} symbols x {args.days} days of 15m), processes={args.processes}")
    print(
        f"fast engine:      {fast_s:.3f} s  -> {fast_cps:,.0f} candles/s  (best of {args.repeat}: "
        f"{', '.join(f'{t:.3f}' for t in times)})"
    )
    print(
        f"reference (bar-by-bar): {ref_n:,} candles in {ref_s:.3f} s -> {ref_cps:,.0f} candles/s "
        f"({len(ref_trades)} trades; fast engine identical on that slice: {same})"
    )
    print(
        f"breakdown, 1 process: engine.strategy.entry_signals {signals_s:.3f} s ({total / signals_s:,.0f} "
        f"candles/s); everything else (1h quorum, exits, sizing, PnL, equity) {own_s:.3f} s "
        f"({total / own_s:,.0f} candles/s)"
    )
    print(
        f"naive per-bar baseline (evaluate_latest at every candle, signals only): {naive_n:,} candles in "
        f"{naive_s:.3f} s -> {naive_n / naive_s:,.0f} candles/s ({naive_signals} signals); "
        f"ratio fast/naive: {fast_cps / (naive_n / naive_s):,.0f}x wall clock, "
        f"{(total / fast_cpu) / (naive_n / naive_cpu):,.0f}x CPU time"
    )
    print(f"ratio fast/reference: {fast_cps / ref_cps:,.0f}x (wall clock)")
    # on a shared machine the wall clock includes waiting for the CPU; CPU seconds do not
    fast_cpu_cps, ref_cpu_cps = total / fast_cpu, ref_n / ref_cpu
    cores = min(args.processes, os.cpu_count() or 1)
    print(
        f"CPU time: fast engine {fast_cpu:.3f} CPU-s -> {fast_cpu_cps:,.0f} candles per CPU-second "
        f"(~{fast_cpu_cps * cores:,.0f} candles/s on {cores} dedicated cores); reference {ref_cpu:.3f} CPU-s -> "
        f"{ref_cpu_cps:,.0f} candles per CPU-second; ratio {fast_cpu_cps / ref_cpu_cps:,.0f}x"
    )
    print(f"load average during the run: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(
        f"trades: {m['trades']}, win rate {m['win_rate']}, net PnL {m['net_pnl']:.2f}, "
        f"max DD {m['max_drawdown_pct']:.2f}%, counters {result.counters}"
    )
    print(f"peak RSS: main {self_mb:,.0f} MB, largest worker {child_mb:,.0f} MB, sum <= {self_mb + child_mb:,.0f} MB")
    target = "OK" if fast_cps >= 1_000_000 else "BELOW TARGET"
    cpu_target = "OK" if fast_cpu_cps * cores >= 1_000_000 else "BELOW TARGET"
    print(
        f"target >= 1,000,000 candles/s: wall clock {target}, CPU-time on {cores} cores {cpu_target}; "
        f"memory < 1 GB: {'OK' if self_mb + child_mb < 1024 else 'NO'}"
    )


if __name__ == "__main__":
    main()
