"""Full-scan speed: 200 symbols × 1000 15m candles + their 1h candles, from data already in memory.

Fast path: engine.scan.scan_many (the code the `scan_markets` task runs), on one core (BLAS limited to one thread).
Baseline, measured in the same run: the naive per-symbol loop a first version would write — a pandas DataFrame per
symbol and the `ta` library's EMA, RSI, ATR, ADX and volume SMA on the 15m and 1h frames, then the same entry
conditions on the last closed candle. Goal: median < 150 ms (7 runs). Also reports the RSS the fast scan adds
(goal < 200 MB).

Candles: the bundled real XRP/USDT:USDT 5m futures candles in data/ (resampled to 15m; see data/README.md) — their
log returns and volumes are bootstrapped per symbol so that 200 symbols have distinct but realistic paths. Without
that file, a random walk.
Run: .venv/bin/python benchmarks/bench_scan.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import load_average, measure, result_line  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from engine.candles import Candles, resample  # noqa: E402
from engine.scan import scan_many  # noqa: E402
from engine.strategy import StrategyParams  # noqa: E402

SYMBOLS, CANDLES, BUDGET_S, RSS_BUDGET_MB, RUNS = 200, 1000, 0.150, 200, 7
M15 = 900_000
SHARED_XRP = ROOT / "data" / "ohlcv" / "futures" / "XRP_USDT_USDT-5m-futures.feather"


def real_returns() -> np.ndarray | None:
    if not SHARED_XRP.exists():
        return None
    c = Candles.from_frame(pd.read_feather(SHARED_XRP))
    c15 = resample(c, 15)
    return np.diff(np.log(c15.close)), c15.volume


def make_series(rng: np.random.Generator) -> dict[str, tuple[Candles, Candles]]:
    source = real_returns()
    start = 1_700_000_000_000 - (1_700_000_000_000 % (4 * M15))
    ts = start + np.arange(CANDLES, dtype=np.int64) * M15
    series = {}
    for i in range(SYMBOLS):
        if source is not None:
            returns, volumes = source
            r = rng.choice(returns, CANDLES)
            vol = rng.choice(volumes, CANDLES) * rng.uniform(0.5, 2.0)
        else:
            r = rng.normal(0, 0.004, CANDLES)
            vol = rng.lognormal(10, 0.6, CANDLES)
        close = 10 ** rng.uniform(-2, 4) * np.exp(np.cumsum(r))
        open_ = np.r_[close[0], close[:-1]]
        wick = np.abs(rng.normal(0, 0.002, CANDLES)) * close
        high, low = np.maximum(open_, close) + wick, np.minimum(open_, close) - wick
        c15 = Candles(ts=ts, open=open_, high=high, low=low, close=close, volume=vol)
        series[f"SYM{i:03d}/USDT:USDT"] = (c15, resample(c15, 60))
    return series


def naive_scan(series, params: StrategyParams) -> int:
    """Per-symbol pandas + ta: what the scan looks like without vectorising across the engine."""
    from ta.momentum import RSIIndicator
    from ta.trend import ADXIndicator, EMAIndicator
    from ta.volatility import AverageTrueRange

    found = 0
    for c15, c1h in series.values():
        df = c15.to_frame()
        fast = EMAIndicator(df["close"], params.ema_fast).ema_indicator()
        slow = EMAIndicator(df["close"], params.ema_slow).ema_indicator()
        rsi = RSIIndicator(df["close"], params.rsi_period).rsi()
        AverageTrueRange(df["high"], df["low"], df["close"], params.atr_period).average_true_range()
        adx = ADXIndicator(df["high"], df["low"], df["close"], params.adx_period).adx()
        vol_ratio = df["volume"] / df["volume"].rolling(params.volume_ma).mean()
        h = c1h.to_frame()
        h_fast = EMAIndicator(h["close"], params.ema_fast).ema_indicator()
        h_slow = EMAIndicator(h["close"], params.ema_slow).ema_indicator()
        RSIIndicator(h["close"], params.rsi_period).rsi()
        last = len(df) - 1
        cross_up = fast.iloc[last] > slow.iloc[last] and fast.iloc[last - 1] <= slow.iloc[last - 1]
        if cross_up and rsi.iloc[last] > params.rsi_long and vol_ratio.iloc[last] >= params.volume_ratio_min:
            found += int(adx.iloc[last] >= params.adx_min and h_fast.iloc[-1] > h_slow.iloc[-1])
    return found


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(42)
    series = make_series(rng)
    params = StrategyParams()
    now_ms = int(series["SYM000/USDT:USDT"][0].ts[-1]) + M15

    rss_before = rss_mb()
    with threadpool_limits(limits=1):
        fast = measure(lambda: scan_many(series, params, now_ms=now_ms), RUNS)  # one warm-up run first
        rss_added = rss_mb() - rss_before
        naive = measure(lambda: naive_scan(series, params), 3, warm_up=0)
    result = fast.result
    data = "real XRP/USDT:USDT returns, bootstrapped" if SHARED_XRP.exists() else "random walk"
    print(f"symbols={SYMBOLS} candles/symbol={CANDLES} (15m) + 1h; data: {data}; {load_average()}")
    print(
        f"engine.scan_many    : {fast.describe()} ({len(result.candidates)} candidates, {len(result.skipped)} skipped)"
    )
    print(f"naive pandas+ta loop: {naive.describe()}")
    print(f"RSS added by the scan: {rss_added:.0f} MB (goal < {RSS_BUDGET_MB} MB)")
    ok = fast.median < BUDGET_S and rss_added < RSS_BUDGET_MB
    print(
        result_line(
            f"scan {SYMBOLS} symbols x {CANDLES} candles, real returns, one core",
            f"{fast.median * 1000:.0f} ms median of {RUNS} (CPU {fast.median_cpu * 1000:.0f} ms), +{rss_added:.0f} MB",
            f"{naive.median / fast.median:.1f}x faster than a pandas + ta loop ({naive.median:.2f} s, same run)",
            f"< {BUDGET_S * 1000:.0f} ms and < {RSS_BUDGET_MB} MB",
            ok,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
