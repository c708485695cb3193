"""Scan many symbols at once: data checks, the 15m strategy on the last closed candle, the 1h quorum, risk.

``scan_many`` is what the Celery scan task calls per batch; it never raises for one bad symbol: the symbol
lands in ``skipped`` with a reason (bad data, too few candles) and the scan goes on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from engine.candles import Candles, check_candles
from engine.errors import EngineError
from engine.params import CONFIRMATION_TIMEFRAME_MS, SIGNAL_TIMEFRAME_MS, StrategyParams, bars_needed
from engine.strategy import SignalCandidate, evaluate_latest


@dataclass(frozen=True)
class ScanResult:
    candidates: list[SignalCandidate] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _data_problem(c15: Candles, c1h: Candles | None, params: StrategyParams) -> str | None:
    report15 = check_candles(c15, SIGNAL_TIMEFRAME_MS, min_rows=bars_needed(params))
    if not report15.ok:
        return f"15m candles: {report15.reason}"
    if c1h is not None:
        report1h = check_candles(c1h, CONFIRMATION_TIMEFRAME_MS)
        if not report1h.ok:
            return f"1h candles: {report1h.reason}"
    return None


def scan_many(
    series: Mapping[str, tuple[Candles, Candles | None]],
    params: StrategyParams,
    *,
    funding: Mapping[str, float | Decimal] | None = None,
    now_ms: int | None = None,
) -> ScanResult:
    """Evaluate every symbol's last closed 15m candle; ``series[symbol] = (candles_15m, candles_1h)``.

    ``candles_1h`` may be ``None`` (derived from the 15m candles). ``funding`` maps symbol → current funding
    rate per 8 h. ``now_ms`` (default: the wall clock) decides which candles are closed; pass the same value to
    every batch of one scan so they agree.
    """
    params.validate()
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    funding = funding or {}
    result = ScanResult()
    for symbol, (c15, c1h) in series.items():
        closed15 = c15.closed_at(now_ms, SIGNAL_TIMEFRAME_MS)
        closed1h = None if c1h is None else c1h.closed_at(now_ms, CONFIRMATION_TIMEFRAME_MS)
        problem = _data_problem(closed15, closed1h, params)
        if problem:
            result.skipped[symbol] = problem
            continue
        try:
            candidate = evaluate_latest(
                closed15,
                closed1h,
                params,
                funding_rate=funding.get(symbol),
                symbol=symbol,
                now_ms=now_ms,
            )
        except EngineError as error:
            result.skipped[symbol] = f"{type(error).__name__}: {error}"
            continue
        if candidate is not None:
            result.candidates.append(candidate)
    return result
