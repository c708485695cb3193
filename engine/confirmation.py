"""The 1h multi-analysis confirmation: a quorum of four checks on the last 1h candle CLOSED at decision time.

Checks (long; shorts mirror them), evaluated on the 1h candle ``k`` = the last one whose close time
(open + 1h) is ``<= at_ts_ms``:

- ``trend``     — EMA(ema_fast) > EMA(ema_slow) and close > EMA(ema_slow) on 1h;
- ``volume``    — 1h volume / SMA(volume, volume_ma) >= ``h1_volume_ratio_min`` (participation, side-neutral);
- ``momentum``  — 1h RSI(rsi_period) > ``h1_rsi_mid`` (below it for shorts);
- ``structure`` — a higher low and a higher close: the lowest low of the last ``m = h1_structure_bars`` candles is
  above the lowest low of the ``m`` before them, and ``close[k] > close[k - m]`` (lower high / lower close for
  shorts).

``at_ts_ms`` is the decision time: the CLOSE time of the 15m signal candle (its open time + 15 min). Passing the
open time is merely more conservative. A 1h candle older than one 1h period before ``at_ts_ms`` (stale or
missing data) fails every check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import indicators
from engine.candles import Candles
from engine.errors import InvalidParameters
from engine.params import CONFIRMATION_TIMEFRAME_MS, LONG, SHORT, StrategyParams

CHECK_NAMES: tuple[str, ...] = ("trend", "volume", "momentum", "structure")


@dataclass(frozen=True)
class Confirmation:
    passed: tuple[str, ...]
    count: int
    ok: bool


@dataclass(frozen=True, eq=False)
class ConfirmationBatch:
    """Vectorised quorum results: ``passed[q, j]`` says whether check ``CHECK_NAMES[j]`` passed for query ``q``."""

    passed: np.ndarray  # bool (n_queries, 4)
    count: np.ndarray  # int8 (n_queries,)
    ok: np.ndarray  # bool (n_queries,)
    h1_index: np.ndarray  # int64 index of the 1h candle used, -1 if none

    def confirmation(self, q: int) -> Confirmation:
        names = tuple(name for name, hit in zip(CHECK_NAMES, self.passed[q], strict=True) if hit)
        return Confirmation(passed=names, count=int(self.count[q]), ok=bool(self.ok[q]))


@dataclass(frozen=True, eq=False)
class HourlyChecks:
    """Per-1h-candle check outcomes, shape (n_candles, 4), for each side."""

    long: np.ndarray
    short: np.ndarray


def hourly_checks(c1h: Candles, params: StrategyParams) -> HourlyChecks:
    """Evaluate the four checks on every 1h candle (each uses candles up to and including itself)."""
    close, high, low = c1h.close, c1h.high, c1h.low
    n = len(c1h)
    m = params.h1_structure_bars
    fast = indicators.ema(close, params.ema_fast)
    slow = indicators.ema(close, params.ema_slow)
    rsi = indicators.rsi(close, params.rsi_period)
    volume_ratio = indicators.volume_ratio(c1h.volume, params.volume_ma)
    recent_low = indicators.rolling_min(low, m)
    recent_high = indicators.rolling_max(high, m)
    prior_low, prior_high, close_m_ago = (_bars_ago(values, m) for values in (recent_low, recent_high, close))
    long_checks = np.empty((n, 4), dtype=bool)
    short_checks = np.empty((n, 4), dtype=bool)
    with np.errstate(invalid="ignore"):
        np.greater_equal(volume_ratio, params.h1_volume_ratio_min, out=long_checks[:, 1])
        short_checks[:, 1] = long_checks[:, 1]
        long_checks[:, 0] = (fast > slow) & (close > slow)
        long_checks[:, 2] = rsi > params.h1_rsi_mid
        long_checks[:, 3] = (recent_low > prior_low) & (close > close_m_ago)
        short_checks[:, 0] = (fast < slow) & (close < slow)
        short_checks[:, 2] = rsi < params.h1_rsi_mid
        short_checks[:, 3] = (recent_high < prior_high) & (close < close_m_ago)
    return HourlyChecks(long=long_checks, short=short_checks)


def _bars_ago(values: np.ndarray, m: int) -> np.ndarray:
    """``out[i] = values[i - m]``; NaN for the first ``m`` bars."""
    out = np.full(len(values), np.nan)
    if len(values) > m:
        out[m:] = values[:-m]
    return out


def _side_code(side: int | str) -> int:
    if side in (LONG, "long"):
        return LONG
    if side in (SHORT, "short"):
        return SHORT
    raise InvalidParameters(f"side must be 'long'/'short' or 1/-1, got {side!r}")


def quorum_many(
    c1h: Candles,
    sides: np.ndarray,
    at_ts_ms: np.ndarray,
    params: StrategyParams,
    *,
    checks: HourlyChecks | None = None,
) -> ConfirmationBatch:
    """The quorum for many ``(side, decision time)`` pairs at once (sides as 1/-1; 0 gives no confirmation).

    ``checks`` may be passed in when the same 1h series is queried repeatedly (backtests).
    """
    sides = np.asarray(sides, dtype=np.int8)
    at_ts_ms = np.asarray(at_ts_ms, dtype=np.int64)
    if sides.shape != at_ts_ms.shape:
        raise InvalidParameters(f"sides {sides.shape} and at_ts_ms {at_ts_ms.shape} differ in shape")
    if checks is None:
        checks = hourly_checks(c1h, params)
    close_time = c1h.ts + CONFIRMATION_TIMEFRAME_MS
    k = np.searchsorted(close_time, at_ts_ms, side="right") - 1
    usable = k >= 0
    safe_k = np.where(usable, k, 0)
    if len(c1h):
        fresh = usable & (at_ts_ms - close_time[safe_k] < CONFIRMATION_TIMEFRAME_MS)
        passed = np.where((sides == LONG)[:, None], checks.long[safe_k], checks.short[safe_k])
    else:
        fresh = np.zeros(sides.shape, dtype=bool)
        passed = np.zeros((len(sides), 4), dtype=bool)
    passed &= (fresh & (sides != 0))[:, None]
    count = passed.sum(axis=1).astype(np.int8)
    ok = (count >= params.quorum) & fresh & (sides != 0)
    return ConfirmationBatch(passed=passed, count=count, ok=ok, h1_index=np.where(usable, k, -1))


def quorum(c1h: Candles, side: int | str, at_ts_ms: int, params: StrategyParams) -> Confirmation:
    """The quorum for one signal; ``at_ts_ms`` is the close time of the 15m signal candle."""
    code = _side_code(side)
    batch = quorum_many(c1h, np.array([code]), np.array([at_ts_ms]), params)
    return batch.confirmation(0)
