"""Backtester speed on the real multi-symbol workload, with backtesting.py measured in the same run on the same candles.

Workload (``benchmarks/workload.py``): 12 real pairs (freqtrade's test candles: 10 BTC-quoted spot pairs, the
XRP/USDT:USDT perpetual, XRP/ETH) resampled to 15m and 1h, tiled to 120 series = 200,590 15m candles. Nothing
synthetic except the tiling (each copy's prices scaled by a constant).

Figures (each a median of ``--runs`` runs, wall clock and CPU time, with the load average):

1. **Engine**: ``engine.backtest.run_backtest`` on the 120 series in ONE process with the full rules: 15m entry
   signals, 1h quorum, S/R room, exits (stop, TP1 half + break-even, TP2), sizing on the shared account, taker/maker
   fees, slippage, funding every 8h. Goal: >= 1,000,000 candles/s (wall-clock median).
2. **backtesting.py** (PyPI ``backtesting``), same run, same 120 series, one ``Backtest`` per series (it is
   single-asset), fed the same rules as far as it can take them: its ``Strategy.init`` computes the entry signals with
   the engine's own code (``engine.backtest.candidate_signals``: 15m rules + 1h quorum), ``next`` enters at the next
   open when flat with two half-size trades (stop + TP1, stop + TP2) and moves the TP2 half's stop to its entry price
   once the TP1 half has closed (break-even from the next candle); stop before target inside a candle, as in the
   engine; commission = the taker fee, spread = the slippage, open positions closed at the last close. It has no
   funding and no shared account (each series has its own cash); its run includes the statistics it always computes.
   Compared: the positions (entry time, final exit time) of both, per series; printed as identical / total.
3. **Per-symbol overhead and linearity**: the engine on 30/60/120/240 series (symbols) and on the 12 pairs made 1, 2,
   4 and 8 times longer (candles); ``time = a * candles + b * symbols`` fitted by least squares. Goal: b < 1 ms.
4. **Parameter sweep** (``engine.backtest.sweep``): 32 combinations over the 120 series with 2 processes and, as the
   baseline in the same run, with 1 process; combinations per second, the speed-up and the CPU-seconds per second
   (cores kept busy). Goal: the sweep uses both cores (speed-up >= 1.5; on a machine whose cores are taken by other
   work the speed-up cannot show, the load average says so).
5. Check: the engine equals the bar-by-bar reference simulator (``engine/tests/reference_backtest.py``) on two series.

Run:  .venv/bin/python benchmarks/bench_backtest.py [--runs 5] [--baseline-runs 3] [--quick]
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar: no output, no cost

from report import load_average, measure, result_line
from workload import PAIRS, candle_count, lengthened, real_pairs, tiled

from engine import compiled
from engine.backtest import BacktestConfig, candidate_signals, run_backtest, sweep
from engine.candles import resample
from engine.strategy import StrategyParams

GOAL_CANDLES_PER_S = 1_000_000
GOAL_OVERHEAD_MS = 1.0
GOAL_SWEEP_SPEEDUP = 1.5
SWEEP_ROUNDS = 5


# ---- backtesting.py, fed the engine's signals and exit rules ----------------------------------------------------


def baseline_run(frames: dict, data: dict, params: StrategyParams, config: BacktestConfig) -> dict:
    """One backtesting.py ``Backtest`` per series; returns ``{symbol: [(entry_ts, exit_ts), ...]}``."""
    from backtesting import Backtest, Strategy

    class EngineSignals(Strategy):
        candles = None  # (Candles 15m, Candles 1h) of the series, set per run

        def init(self):
            c15, c1h = self.candles
            idx, sig = candidate_signals(c15, c1h, params, None)
            self.entries = {
                int(i): (int(sig.side[i]), float(sig.stop[i]), float(sig.tp1[i]), float(sig.tp2[i])) for i in idx
            }
            self.runner_tp = None
            self.moved = True

        def next(self):
            trades = self.trades
            if len(trades) == 1 and not self.moved and trades[0].tp == self.runner_tp:
                runner = trades[0]  # the TP1 half closed: break-even for the rest from the next candle
                runner.sl = runner.entry_price
                self.moved = True
            if trades:
                return
            signal = self.entries.get(len(self.data) - 1)
            if signal is None:
                return
            side, stop, tp1, tp2 = signal
            units = max(1, int(0.1 * self.equity / self.data.Close[-1]))
            order = self.buy if side == 1 else self.sell
            order(size=units, sl=stop, tp=tp1)
            order(size=units, sl=stop, tp=tp2)
            self.runner_tp, self.moved = tp2, False

    positions = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for symbol, frame in frames.items():
            EngineSignals.candles = data[symbol]
            bt = Backtest(
                frame,
                EngineSignals,
                cash=1e12,
                commission=config.fee_taker,
                spread=config.slippage,
                finalize_trades=True,
            )
            stats = bt.run()
            trades = stats["_trades"]
            by_entry: dict[int, int] = {}
            for entry, exit_ in zip(trades["EntryTime"], trades["ExitTime"], strict=True):
                e_ms, x_ms = entry.value // 1_000_000, exit_.value // 1_000_000
                by_entry[e_ms] = max(by_entry.get(e_ms, x_ms), x_ms)
            positions[symbol] = sorted(by_entry.items())
    return positions


def frames_for(data: dict) -> dict:
    """backtesting.py's input: one OHLCV DataFrame per series, indexed by open time."""
    return {
        symbol: pd.DataFrame(
            {"Open": c15.open, "High": c15.high, "Low": c15.low, "Close": c15.close, "Volume": c15.volume},
            index=pd.to_datetime(c15.ts, unit="ms"),
        )
        for symbol, (c15, _) in data.items()
    }


def engine_positions(result) -> dict:
    positions: dict[str, list[tuple[int, int]]] = {}
    for t in result.trades:
        positions.setdefault(t.symbol, []).append((t.entry_ts, t.exit_ts))
    return positions


# ---- linearity ---------------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the sweep's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def fit_overhead(points: list[tuple[int, int, float]]) -> tuple[float, float]:
    """Least squares ``seconds = a * candles + b * symbols``; returns (a, b)."""
    design = np.array([[c, s] for c, s, _ in points], dtype=float)
    seconds = np.array([t for _, _, t in points])
    (a, b), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    return float(a), float(b)


def lengthened_pairs(factor: int) -> dict:
    out = {}
    for symbol, (c15, _) in real_pairs().items():
        long15 = lengthened(c15, factor)
        out[symbol] = (long15, resample(long15, 60, source_timeframe_ms=900_000))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="measured runs of the engine (median reported)")
    ap.add_argument("--baseline-runs", type=int, default=3, help="measured runs of backtesting.py")
    ap.add_argument("--series", type=int, default=120)
    ap.add_argument("--quick", action="store_true", help="skip the linearity fit and the sweep")
    args = ap.parse_args()
    runs = max(5, args.runs)

    params = StrategyParams()
    config = BacktestConfig()
    data = tiled(args.series)
    total = candle_count(data)
    lengths = sorted({len(c15) for c15, _ in data.values()})
    print(
        f"workload: {len(data)} series x {min(lengths)}..{max(lengths)} 15m candles = {total:,} candles (+ 1h), REAL "
        f"candles of {len(PAIRS)} pairs tiled {len(data) // len(PAIRS)}x; compiled loops: {compiled.enabled()}"
    )
    print(f"before: {load_average()}")

    results: list[str] = []
    ok_all = True

    # 1. the engine
    engine = measure(lambda: run_backtest(data, params, config), runs)
    result = engine.result
    engine_cps = total / engine.median
    print(f"engine (1 process):      {engine.describe(total, 'candles')}")
    print(f"  {len(result.trades)} trades, counters {result.counters}")

    # 2. backtesting.py on the same candles and signals
    frames = frames_for(data)
    baseline = measure(lambda: baseline_run(frames, data, params, config), max(1, args.baseline_runs), warm_up=0)
    base_cps = total / baseline.median
    print(f"backtesting.py:          {baseline.describe(total, 'candles')}")
    ours = engine_positions(result)
    theirs = baseline.result
    same = sum(len(set(ours.get(s, [])) & set(theirs.get(s, []))) for s in data)
    count_ours = sum(len(v) for v in ours.values())
    count_theirs = sum(len(v) for v in theirs.values())
    print(
        f"  positions (entry time, final exit time) identical: {same} of {count_ours} (engine) / {count_theirs} "
        f"(backtesting.py)"
    )
    ratio = engine_cps / base_cps
    ok = engine_cps >= GOAL_CANDLES_PER_S
    ok_all &= ok
    results.append(
        result_line(
            "backtest candles/s (1 process, 120 real series)",
            f"{engine_cps:,.0f} candles/s median of {runs} (CPU {total / engine.median_cpu:,.0f})",
            f"{ratio:.1f}x backtesting.py ({base_cps:,.0f} candles/s, same run, {same}/{count_ours} positions equal)",
            f">= {GOAL_CANDLES_PER_S:,}",
            ok,
        )
    )

    # 5. the reference simulator on two series (correctness of what was timed)
    from engine.tests.reference_backtest import reference_backtest

    two = dict(list(data.items())[:2])
    fast_two = run_backtest(two, params, config)
    ref_trades, _, _ = reference_backtest(two, params, config)
    same_ref = [(t.entry_ts, t.exit_ts, t.reasons) for t in fast_two.trades] == [
        (r["entry_ts"], r["exit_ts"], tuple(f[1] for f in r["fills"])) for r in ref_trades
    ] and all(abs(t.net_pnl - r["net"]) < 1e-9 for t, r in zip(fast_two.trades, ref_trades, strict=True))
    print(f"reference simulator on {', '.join(two)}: {len(ref_trades)} trades, engine identical: {same_ref}")
    ok_all &= same_ref

    if not args.quick:
        # 3. per-symbol overhead and linearity: the sizes are measured in interleaved rounds (one run of each per
        # round, 5 rounds, medians), so a change in the machine's load hits every size alike
        sizes = [tiled(n) for n in (30, 60, 120, 240)] + [lengthened_pairs(f) for f in (1, 2, 4, 8)]
        for subset in sizes:
            run_backtest(subset, params, config)
        seconds: list[list[float]] = [[] for _ in sizes]
        cpu: list[list[float]] = [[] for _ in sizes]
        for _ in range(5):
            for k, subset in enumerate(sizes):
                started, cpu0 = time.perf_counter(), time.process_time()
                run_backtest(subset, params, config)
                cpu[k].append(time.process_time() - cpu0)
                seconds[k].append(time.perf_counter() - started)
        points, cpu_points = [], []
        print("linearity (engine, median of 5 interleaved rounds):")
        for subset, times, cpu_times in zip(sizes, seconds, cpu, strict=True):
            t, t_cpu = statistics.median(times), statistics.median(cpu_times)
            c = candle_count(subset)
            points.append((c, len(subset), t))
            cpu_points.append((c, len(subset), t_cpu))
            print(
                f"  {len(subset):4d} series x ~{c // len(subset):,} candles = {c:9,d}: {t:.3f} s wall, {c / t:,.0f} c/s; "
                f"{t_cpu:.3f} s CPU, {c / t_cpu:,.0f} c/s"
            )
        per_candle, per_symbol = fit_overhead(points)
        cpu_per_candle, cpu_per_symbol = fit_overhead(cpu_points)
        print(
            f"  fit: {per_candle * 1e9:.0f} ns per candle + {per_symbol * 1e3:.3f} ms per symbol (wall); "
            f"{cpu_per_candle * 1e9:.0f} ns + {cpu_per_symbol * 1e3:.3f} ms (CPU)"
        )
        ok = per_symbol * 1e3 < GOAL_OVERHEAD_MS
        ok_all &= ok
        results.append(
            result_line(
                "backtest per-symbol overhead",
                f"{per_symbol * 1e3:.3f} ms per symbol (+ {per_candle * 1e9:.0f} ns per candle); CPU "
                f"{cpu_per_symbol * 1e3:.3f} ms",
                f"backtesting.py {baseline.median / len(data) * 1e3:.1f} ms per series of ~{total // len(data)} candles",
                f"< {GOAL_OVERHEAD_MS} ms",
                ok,
            )
        )

        # 4. parameter sweep on both cores, 1 process as the baseline (interleaved rounds, medians)
        grid = {
            "stop_atr_mult": [1.0, 1.5, 2.0, 2.5],
            "tp2_r": [2.0, 3.0],
            "exit.breakeven_after_tp1": [True, False],
            "exit.trailing_mode": [None, "atr"],
        }
        combos = int(np.prod([len(v) for v in grid.values()]))
        wall: dict[int, list[float]] = {1: [], 2: []}
        cores: dict[int, list[float]] = {1: [], 2: []}
        work: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(SWEEP_ROUNDS):
            for processes in (1, 2):
                started, cpu0 = time.perf_counter(), cpu_seconds()
                rows = sweep(data, grid, "net_pnl", processes=processes, params=params, config=config)
                wall[processes].append(time.perf_counter() - started)
                work[processes].append(cpu_seconds() - cpu0)
                cores[processes].append(work[processes][-1] / wall[processes][-1])
                assert all(r.error is None for r in rows)
        timings = {p: statistics.median(w) for p, w in wall.items()}
        for processes in (1, 2):
            print(
                f"sweep {combos} combinations x {len(data)} series, {processes} process(es): median "
                f"{timings[processes]:.2f} s of {SWEEP_ROUNDS} -> {combos / timings[processes]:.1f} combinations/s; "
                f"{statistics.median(work[processes]):.2f} CPU-seconds (this process and its workers), "
                f"{statistics.median(cores[processes]):.2f} cores busy"
            )
        speedup = timings[1] / timings[2]
        ok = speedup >= GOAL_SWEEP_SPEEDUP
        ok_all &= ok
        results.append(
            result_line(
                "parameter sweep (2 processes)",
                f"{combos / timings[2]:.1f} combinations/s ({combos} x {len(data)} series), "
                f"{statistics.median(cores[2]):.2f} cores busy",
                f"{speedup:.2f}x the same sweep in 1 process ({combos / timings[1]:.1f}/s)",
                f"speed-up >= {GOAL_SWEEP_SPEEDUP}",
                ok,
            )
        )

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MB; after: {load_average()}")
    for line in results:
        print(line)
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
