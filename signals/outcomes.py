"""Outcome tracking of open signals: replay the candles since the entry through ``engine.exits.step`` — the same
exit rules the position monitor and the backtester use — and close the signal as tp1/tp2/sl/expired with its PnL %.

A signal is followed as a reference position: entry at the close of the signal candle, half closed at TP1 with the
stop moved to break-even, the rest at TP2 (``ExitRules()`` defaults), expiry at ``expires_at``. The stop is checked
before any target inside one candle (conservative). Outcomes:

- ``sl``      — stopped before TP1 (PnL at the stop, or at the open on a gap through it);
- ``tp2``     — TP2 reached (PnL: half at TP1, half at TP2);
- ``tp1``     — TP1 reached, the rest closed at break-even or at expiry (blended PnL);
- ``expired`` — neither TP1 nor the stop before ``expires_at`` (PnL at the open of the first candle past expiry, or
  the last known close when no later candle exists, e.g. the market stopped trading).

PnL % is the unleveraged price move of the reference position in the trade's direction, relative to the entry.
Stateless: each run recomputes from the candles, so re-running is idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings

from engine.candles import Candles, timeframe_to_ms
from engine.exits import ExitEvent, ExitRules, PositionState, step
from engine.strategy import SIGNAL_TIMEFRAME_MS
from signals import selectors
from signals.market_data import MarketData, MarketDataError, get_market_data
from signals.market_data.base import datetime_to_ms, ms_to_datetime
from signals.models import Signal
from signals.services import signal_close, signal_mark_tp1

logger = logging.getLogger(__name__)

MAX_TRACK_CANDLES = 2000


@dataclass(frozen=True)
class OutcomeEvaluation:
    closed: bool
    outcome: str  # Signal.Outcome value ("open" while running)
    pnl_pct: Decimal | None
    closed_ts: int | None  # ms of the candle (open time) the last fill happened on
    tp1_ts: int | None
    events: tuple[ExitEvent, ...]


def _pnl_pct(side: str, entry: float, events: list[ExitEvent]) -> Decimal:
    sign = 1.0 if side == "long" else -1.0
    move = sum(event.quantity * (event.price - entry) * sign for event in events)
    return Decimal(repr(100.0 * move / entry)).quantize(Decimal("0.0001"))


def outcome_evaluate(
    *,
    side: str,
    entry: float,
    stop: float,
    tp1: float,
    tp2: float,
    atr: float,
    entry_ts: int,
    expires_ts: int | None,
    candles: Candles,
    now_ms: int,
) -> OutcomeEvaluation:
    """Pure: follow a reference position over ``candles`` (closed candles with open time >= ``entry_ts``)."""
    rules = ExitRules(expiry_seconds=None if expires_ts is None else max((expires_ts - entry_ts) // 1000, 1))
    state = PositionState.open(
        side=side, entry=entry, stop=stop, tp1=tp1, tp2=tp2, quantity=1.0, opened_ts=entry_ts, atr=atr
    )
    fills: list[ExitEvent] = []
    tp1_ts = closed_ts = None
    for i in range(len(candles)):
        ts = int(candles.ts[i])
        if ts < entry_ts:
            continue
        state, events = step(
            state,
            ts=ts,
            open=float(candles.open[i]),
            high=float(candles.high[i]),
            low=float(candles.low[i]),
            close=float(candles.close[i]),
            rules=rules,
        )
        for event in events:
            fills.append(event)
            if event.reason == "tp1":
                tp1_ts = ts
        if not state.is_open:
            closed_ts = ts
            break
    if state.is_open and expires_ts is not None and now_ms >= expires_ts:
        # expired but no candle past the expiry to close on (data ended / market halted): last known close
        last_close = float(candles.close[-1]) if len(candles) else entry
        fills.append(ExitEvent("expiry", last_close, state.remaining))
        closed_ts = int(candles.ts[-1]) if len(candles) else entry_ts
        state = PositionState(**{**state.__dict__, "remaining": 0.0})
    if state.is_open:
        return OutcomeEvaluation(False, Signal.Outcome.OPEN, None, None, tp1_ts, tuple(fills))
    reasons = {event.reason for event in fills}
    if "tp2" in reasons:
        outcome = Signal.Outcome.TP2
    elif "tp1" in reasons:
        outcome = Signal.Outcome.TP1
    elif "expiry" in reasons:
        outcome = Signal.Outcome.EXPIRED
    else:
        outcome = Signal.Outcome.SL
    return OutcomeEvaluation(True, outcome, _pnl_pct(side, entry, fills), closed_ts, tp1_ts, tuple(fills))


def _track_timeframe() -> str:
    return settings.SIGNAL_TRACK_TIMEFRAME


def _candles_since_entry(*, market_data: MarketData, symbol: str, entry_ts: int, now_ms: int) -> tuple[Candles, int]:
    """Closed candles from the entry on, in the tracking timeframe; when the exchange caps how many candles one
    request returns (OKX: 300) and they no longer reach back to the entry, the signal timeframe (15m, aligned with
    the entry) instead — never a series with a hole between the entry and its first candle."""
    timeframes = [_track_timeframe()]
    if timeframes[0] != "15m":
        timeframes.append("15m")
    for timeframe in timeframes:
        timeframe_ms = timeframe_to_ms(timeframe)
        needed = min((now_ms - entry_ts) // timeframe_ms + 2, MAX_TRACK_CANDLES)
        candles = market_data.ohlcv(symbol, timeframe, needed)
        if len(candles) == 0 or int(candles.ts[0]) <= entry_ts:
            return candles, timeframe_ms
        logger.info("outcome tracking: %s %s candles do not reach back to the entry", symbol, timeframe)
    logger.warning("outcome tracking: %s has no candles back to the entry; following from %s", symbol, candles.ts[0])
    return candles, timeframe_ms


def signal_outcome_update(*, signal: Signal, market_data: MarketData, now_ms: int) -> Signal:
    """Evaluate one open signal against the candles closed since its entry; close it or mark TP1."""
    # the signal candle's close = the entry (15m for technical signals, 1m/5m/15m for flow signals)
    entry_ts = signal.candle_ts + (timeframe_to_ms(signal.timeframe) if signal.timeframe else SIGNAL_TIMEFRAME_MS)
    if now_ms < entry_ts + timeframe_to_ms(_track_timeframe()):
        return signal  # no candle after the entry has closed yet
    candles, timeframe_ms = _candles_since_entry(
        market_data=market_data, symbol=signal.symbol.symbol, entry_ts=entry_ts, now_ms=now_ms
    )
    evaluation = outcome_evaluate(
        side=signal.side,
        entry=float(signal.entry),
        stop=float(signal.stop),
        tp1=float(signal.tp1),
        tp2=float(signal.tp2),
        atr=float(signal.atr or 0),
        entry_ts=entry_ts,
        expires_ts=None if signal.expires_at is None else datetime_to_ms(signal.expires_at),
        candles=candles,
        now_ms=now_ms,
    )
    if evaluation.tp1_ts is not None and signal.tp1_hit_at is None:
        signal = signal_mark_tp1(signal=signal, at=ms_to_datetime(evaluation.tp1_ts + timeframe_ms))
    if evaluation.closed:
        closed_at: datetime = ms_to_datetime(min(evaluation.closed_ts + timeframe_ms, now_ms))
        signal = signal_close(
            signal=signal, outcome=evaluation.outcome, pnl_pct=evaluation.pnl_pct, closed_at=closed_at
        )
    return signal


def signal_track_outcomes(*, market_data: MarketData | None = None, now_ms: int | None = None) -> list[Signal]:
    """Follow every open signal (every source); returns the signals closed by this run. A market-data failure for one
    signal is logged and retried on the next run; the others are still tracked."""
    market_data = market_data or get_market_data()
    now_ms = market_data.now_ms() if now_ms is None else now_ms
    closed: list[Signal] = []
    for signal in selectors.signal_list_open():
        try:
            updated = signal_outcome_update(signal=signal, market_data=market_data, now_ms=now_ms)
        except MarketDataError as error:
            logger.warning("outcome tracking: %s skipped this run: %s", signal, error)
            continue
        if updated.status == Signal.Status.CLOSED:
            closed.append(updated)
    return closed
