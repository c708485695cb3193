"""The strategy's parameters and shared constants: sides, timeframes, ``StrategyParams`` and the candle counts it
needs.

Both the 15m entry rules (``engine.strategy``) and the 1h confirmation (``engine.confirmation``) read these; keeping
them here lets the strategy import the confirmation without either importing the other's module for its settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.errors import InvalidParameters

LONG = 1
SHORT = -1
SIDE_NAMES = {LONG: "long", SHORT: "short"}
SIGNAL_TIMEFRAME = "15m"
SIGNAL_TIMEFRAME_MS = 900_000
CONFIRMATION_TIMEFRAME_MS = 3_600_000


@dataclass(frozen=True)
class StrategyParams:
    """Every tunable of the signal strategy and its 1h confirmation. ``validate()`` before use."""

    # 15m entry
    ema_fast: int = 9
    ema_slow: int = 21
    cross_window: int = 3
    rsi_period: int = 14
    rsi_long: float = 55.0
    rsi_short: float = 45.0
    rsi_long_max: float = 80.0
    rsi_short_min: float = 20.0
    volume_ma: int = 20
    volume_ratio_min: float = 1.10
    atr_period: int = 14
    adx_period: int = 14
    adx_min: float = 20.0
    # stops and targets (R = stop distance)
    stop_atr_mult: float = 1.5
    tp1_r: float = 1.0
    tp2_r: float = 2.0
    # support / resistance
    swing_window: int = 3
    sr_lookback: int = 96  # 24 h of 15m candles
    sr_buffer_atr: float = 0.5
    # 1h multi-analysis confirmation
    quorum: int = 2
    h1_volume_ratio_min: float = 1.0
    h1_rsi_mid: float = 50.0
    h1_structure_bars: int = 6

    def validate(self) -> StrategyParams:
        """Raise ``InvalidParameters`` naming every problem; return ``self`` so calls can chain.

        The instance is immutable, so a successful check is remembered on it (the scan and the backtest validate the
        same parameters once per symbol)."""
        if self.__dict__.get("_valid"):
            return self
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                problems.append(f"{f.name} must be a finite number, got {value!r}")
        if problems:
            raise InvalidParameters("; ".join(problems))
        for name in (
            "ema_fast",
            "ema_slow",
            "cross_window",
            "rsi_period",
            "volume_ma",
            "atr_period",
            "adx_period",
            "swing_window",
            "sr_lookback",
            "h1_structure_bars",
        ):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.ema_fast >= self.ema_slow:
            problems.append(f"ema_fast ({self.ema_fast}) must be smaller than ema_slow ({self.ema_slow})")
        if not 0 <= self.rsi_short < self.rsi_long <= 100:
            problems.append(f"need 0 <= rsi_short ({self.rsi_short}) < rsi_long ({self.rsi_long}) <= 100")
        if not self.rsi_long < self.rsi_long_max <= 100:
            problems.append(f"need rsi_long ({self.rsi_long}) < rsi_long_max ({self.rsi_long_max}) <= 100")
        if not 0 <= self.rsi_short_min < self.rsi_short:
            problems.append(f"need 0 <= rsi_short_min ({self.rsi_short_min}) < rsi_short ({self.rsi_short})")
        if not 0 <= self.h1_rsi_mid <= 100:
            problems.append(f"h1_rsi_mid must be within 0..100, got {self.h1_rsi_mid}")
        if not 0 <= self.adx_min <= 100:
            problems.append(f"adx_min must be within 0..100, got {self.adx_min}")
        for name in ("volume_ratio_min", "h1_volume_ratio_min", "sr_buffer_atr"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("stop_atr_mult", "tp1_r", "tp2_r"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.tp2_r < self.tp1_r:
            problems.append(f"tp2_r ({self.tp2_r}) must not be below tp1_r ({self.tp1_r})")
        if self.sr_lookback <= self.swing_window:
            problems.append(f"sr_lookback ({self.sr_lookback}) must exceed swing_window ({self.swing_window})")
        if int(self.quorum) != self.quorum or not 0 <= self.quorum <= 4:
            problems.append(f"quorum must be an integer 0..4 (four 1h checks), got {self.quorum!r}")
        if problems:
            raise InvalidParameters("; ".join(problems))
        object.__setattr__(self, "_valid", True)
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StrategyParams:
        """Build from a settings/DB mapping; unknown keys are an error (typos must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameters(f"unknown strategy parameter(s): {', '.join(unknown)}")
        return cls(**values).validate()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bars_needed(params: StrategyParams) -> int:
    """Closed 15m candles needed before the first bar can signal (every indicator defined, one bar of history
    for the crossover). Live scans should fetch ``bars_recommended`` so EMA/ADX values have converged."""
    return max(params.ema_slow + 1, params.rsi_period, params.atr_period, 2 * params.adx_period, params.volume_ma) + 1


def bars_recommended(params: StrategyParams) -> int:
    """Candles to fetch so that seeding effects on EMA/ADX are negligible (< 1e-4 relative)."""
    return max(bars_needed(params), 10 * max(params.ema_slow, params.adx_period), params.sr_lookback + 1)
