"""The 15m EMA-crossover scalping strategy: vectorised entry signals and the live evaluation (its parameters:
``engine.params``).

A long signal on bar ``i`` (a CLOSED 15m candle) needs all of:

1. **crossover** — EMA(fast) crossed above EMA(slow) within the last ``cross_window`` bars (``i`` included) and is
   still above it; only the *first* bar after a cross that passes every filter signals (one signal per cross);
2. **price** — the close is above EMA(fast);
3. **RSI** — ``rsi_long < RSI < rsi_long_max`` (strictly above 55 for longs, below 45 for shorts) (momentum, but not chasing an exhausted move);
4. **volume** — ``volume / SMA(volume, volume_ma) >= volume_ratio_min``;
5. **trend strength** — ADX(``adx_period``) ``>= adx_min``. Choice: Wilder's ADX(14) >= 20, the common
   "a trend exists" threshold; 25 halves the signal count on the shared test data without better quality;
6. **room to run** — no swing resistance (confirmed pivot high within ``sr_lookback`` bars) closer than
   ``sr_buffer_atr`` ATRs above the close.

Shorts mirror every rule. Stops are ATR based (``entry -/+ stop_atr_mult * ATR``), targets are R multiples of
that distance. The live path (``evaluate_latest``) adds the 1h quorum (``engine.confirmation``) and a risk
level (``engine.risk``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from engine import compiled, indicators
from engine.candles import Candles, resample
from engine.confirmation import quorum
from engine.errors import InsufficientData
from engine.params import (
    CONFIRMATION_TIMEFRAME_MS,
    LONG,
    SHORT,
    SIDE_NAMES,
    SIGNAL_TIMEFRAME,
    SIGNAL_TIMEFRAME_MS,
    StrategyParams,
    bars_needed,
    bars_recommended,
)
from engine.risk import risk_level

# the parameters and constants live in engine.params (shared with engine.confirmation); re-exported here because
# callers know them as part of the strategy's API
__all__ = [
    "CONFIRMATION_TIMEFRAME_MS",
    "LONG",
    "SHORT",
    "SIDE_NAMES",
    "SIGNAL_TIMEFRAME",
    "SIGNAL_TIMEFRAME_MS",
    "EntrySignals",
    "SignalCandidate",
    "StrategyParams",
    "bars_needed",
    "bars_recommended",
    "entry_signals",
    "evaluate_latest",
]


@dataclass(frozen=True, eq=False)
class EntrySignals:
    """Per-bar results of ``entry_signals``; every array has one value per input candle.

    ``side`` is int8 (1 long, -1 short, 0 none). ``stop``/``tp1``/``tp2`` are NaN where ``side == 0``.
    ``sr_distance_atr`` is the distance to the opposing level (resistance for longs, support for shorts) in ATRs
    where a signal fires, NaN when there is no such level within the lookback (or no signal).
    """

    ts: np.ndarray
    side: np.ndarray
    entry: np.ndarray
    stop: np.ndarray
    tp1: np.ndarray
    tp2: np.ndarray
    atr: np.ndarray
    rsi: np.ndarray
    adx: np.ndarray
    volume_ratio: np.ndarray
    sr_distance_atr: np.ndarray
    ema_fast: np.ndarray
    ema_slow: np.ndarray
    support: np.ndarray
    resistance: np.ndarray

    def __len__(self) -> int:
        return len(self.side)

    @property
    def signal_indices(self) -> np.ndarray:
        return np.flatnonzero(self.side)

    def indicators_at(self, i: int) -> dict[str, float | None]:
        """The indicator snapshot stored with a signal (NaN becomes ``None`` so it is JSON/Postgres safe)."""
        return {
            name: _finite_or_none(getattr(self, name)[i]) for name in ("rsi", "adx", "volume_ratio", "sr_distance_atr")
        }


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _first_since_event(event: np.ndarray, ok: np.ndarray, window: int) -> np.ndarray:
    """True on the first bar where ``ok`` holds within ``window`` bars after (and including) an ``event`` bar."""
    if compiled.enabled():
        out = np.zeros(len(event), dtype=bool)
        _first_since_event_loop(event, ok, window, out)
        return out
    n = len(event)
    index = np.arange(n)
    last_event = np.maximum.accumulate(np.where(event, index, -1))
    candidate = ok & (last_event >= 0) & (index - last_event < window)
    running = np.cumsum(candidate)
    before_event = np.where(last_event > 0, running[np.maximum(last_event - 1, 0)], 0)
    return candidate & (running - before_event == 1)


@compiled.loop
def _first_since_event_loop(event: np.ndarray, ok: np.ndarray, window: int, out: np.ndarray) -> None:
    last_event = -1
    taken = True  # whether the current event already gave its bar
    for i in range(event.shape[0]):
        if event[i]:
            last_event = i
            taken = False
        if not taken and ok[i] and i - last_event < window:
            out[i] = True
            taken = True


def _shifted(values: np.ndarray, first: bool) -> np.ndarray:
    """``values`` one bar later: ``out[0] = first``, ``out[i] = values[i - 1]``."""
    out = np.empty_like(values)
    out[0:1] = first
    out[1:] = values[:-1]
    return out


def entry_signals(c15: Candles, params: StrategyParams) -> EntrySignals:
    """Vectorised entry rules over the whole series; bar ``i`` uses candles ``0..i`` only (no look-ahead).

    The caller passes closed candles only (``Candles.closed_at``); the backtester enters on the next open.
    """
    params.validate()
    close, high, low, volume = c15.close, c15.high, c15.low, c15.volume
    n = len(c15)
    fast = indicators.ema(close, params.ema_fast)
    slow = indicators.ema(close, params.ema_slow)
    rsi = indicators.rsi(close, params.rsi_period)
    atr = indicators.atr(high, low, close, params.atr_period)
    adx = indicators.adx(high, low, close, params.adx_period)
    vol_ratio = indicators.volume_ratio(volume, params.volume_ma)
    support, resistance = indicators.support_resistance(
        high, low, close, window=params.swing_window, lookback=params.sr_lookback
    )

    with np.errstate(invalid="ignore", divide="ignore"):
        above = fast > slow
        below = fast < slow
        previous_defined = _shifted(~np.isnan(slow), False)
        cross_up = above & ~_shifted(above, False) & previous_defined
        cross_down = below & ~_shifted(below, False) & previous_defined
        room_long = (resistance - close) / atr
        room_short = (close - support) / atr
        usable = (np.arange(n) >= bars_needed(params) - 1) & (atr > 0) & np.isfinite(atr)
        common = usable & (vol_ratio >= params.volume_ratio_min) & (adx >= params.adx_min)
        long_ok = (
            common
            & above
            & (close > fast)
            & (rsi > params.rsi_long)
            & (rsi < params.rsi_long_max)
            & (np.isnan(room_long) | (room_long >= params.sr_buffer_atr))
        )
        short_ok = (
            common
            & below
            & (close < fast)
            & (rsi < params.rsi_short)
            & (rsi > params.rsi_short_min)
            & (np.isnan(room_short) | (room_short >= params.sr_buffer_atr))
        )
    is_long = _first_since_event(cross_up, long_ok, params.cross_window)
    is_short = _first_since_event(cross_down, short_ok, params.cross_window)
    side = np.zeros(n, dtype=np.int8)
    side[is_long] = LONG
    side[is_short] = SHORT

    # levels where a signal fires (NaN elsewhere)
    at = np.flatnonzero(side)
    direction = side[at].astype(np.float64)
    risk = params.stop_atr_mult * atr[at]
    stop, tp1, tp2, sr_distance = (np.full(n, np.nan) for _ in range(4))
    stop[at] = close[at] - direction * risk
    tp1[at] = close[at] + direction * params.tp1_r * risk
    tp2[at] = close[at] + direction * params.tp2_r * risk
    sr_distance[at] = np.where(side[at] == LONG, room_long[at], room_short[at])
    return EntrySignals(
        ts=c15.ts,
        side=side,
        entry=close.copy(),
        stop=stop,
        tp1=tp1,
        tp2=tp2,
        atr=atr,
        rsi=rsi,
        adx=adx,
        volume_ratio=vol_ratio,
        sr_distance_atr=sr_distance,
        ema_fast=fast,
        ema_slow=slow,
        support=support,
        resistance=resistance,
    )


@dataclass(frozen=True)
class SignalCandidate:
    """One confirmed 15m signal, ready to become a ``signals.Signal`` row (floats; Decimal at the edge)."""

    symbol: str
    side: str  # "long" | "short"
    candle_ts: int  # open time (ms) of the signal candle
    entry: float
    stop: float
    tp1: float
    tp2: float
    atr: float
    risk_level: str  # "low" | "medium" | "high"
    confirmations: tuple[str, ...]
    indicators: dict[str, float | None] = field(default_factory=dict)
    timeframe: str = SIGNAL_TIMEFRAME
    funding_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["confirmations"] = list(self.confirmations)
        return data


def evaluate_latest(
    c15: Candles,
    c1h: Candles | None,
    params: StrategyParams,
    *,
    funding_rate: float | Decimal | None = None,
    symbol: str = "",
    now_ms: int | None = None,
) -> SignalCandidate | None:
    """The live path: a ``SignalCandidate`` when the last CLOSED 15m candle signals and the 1h quorum agrees.

    Candles still forming at ``now_ms`` are dropped first (``now_ms`` defaults to the wall clock; replays and
    tests pass it explicitly). ``c1h=None`` derives the 1h candles from the 15m ones. Raises
    ``InsufficientData`` when fewer than ``bars_needed(params)`` closed candles remain.
    """
    params.validate()
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    if funding_rate is not None:
        funding_rate = float(funding_rate)  # a Decimal from the market-data port is fine too
    closed15 = c15.closed_at(now_ms, SIGNAL_TIMEFRAME_MS)
    needed = bars_needed(params)
    if len(closed15) < needed:
        raise InsufficientData(f"{len(closed15)} closed 15m candles, the strategy needs {needed}")
    if c1h is None:
        c1h = resample(closed15, 60, source_timeframe_ms=SIGNAL_TIMEFRAME_MS)
    # only the tail matters for the last bar once indicators have converged; keeps scans fast
    window = closed15.tail(bars_recommended(params) * 2)
    signals = entry_signals(window, params)
    last = len(signals) - 1
    side = int(signals.side[last])
    if side == 0:
        return None
    candle_ts = int(window.ts[last])
    confirmation = quorum(c1h, side, candle_ts + SIGNAL_TIMEFRAME_MS, params)
    if not confirmation.ok:
        return None
    entry = float(signals.entry[last])
    atr = float(signals.atr[last])
    snapshot = signals.indicators_at(last)
    level = risk_level(
        atr_pct=100.0 * atr / entry,
        sr_distance_atr=snapshot["sr_distance_atr"],
        confirmations=confirmation.passed,
        funding_rate=funding_rate,
        side=SIDE_NAMES[side],
    )
    return SignalCandidate(
        symbol=symbol,
        side=SIDE_NAMES[side],
        candle_ts=candle_ts,
        entry=entry,
        stop=float(signals.stop[last]),
        tp1=float(signals.tp1[last]),
        tp2=float(signals.tp2[last]),
        atr=atr,
        risk_level=level,
        confirmations=confirmation.passed,
        indicators=snapshot,
        funding_rate=funding_rate,
    )
