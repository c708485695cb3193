"""Outcome tracking of open signals: tp1/tp2/sl/expired with PnL %, stored once, ``signal.closed`` announced once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.candles import Candles
from signals import tasks
from signals.market_data import RetryableMarketDataError
from signals.market_data.base import datetime_to_ms
from signals.models import Signal
from signals.outcomes import outcome_evaluate, signal_track_outcomes
from signals.scanning import scan_run_now
from signals.tests.factories import SignalFactory, SymbolFactory

FIVE_MIN = 300_000
ENTRY_TS = 1_700_000_100_000  # the close of the signal candle


def _candles(*bars: tuple[float, float, float, float], start: int = ENTRY_TS) -> Candles:
    """(open, high, low, close) per 5m bar from ``start``."""
    rows = np.array(bars, dtype=float)
    ts = start + FIVE_MIN * np.arange(len(bars), dtype=np.int64)
    return Candles(ts, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], np.full(len(bars), 1000.0))


def _evaluate(candles: Candles, *, side: str = "long", expires_after: int | None = None, now_ms: int | None = None):
    levels = (
        {"entry": 100.0, "stop": 98.0, "tp1": 102.0, "tp2": 104.0}
        if side == "long"
        else {"entry": 100.0, "stop": 102.0, "tp1": 98.0, "tp2": 96.0}
    )
    last = int(candles.ts[-1]) + FIVE_MIN if len(candles) else ENTRY_TS
    return outcome_evaluate(
        side=side,
        atr=1.333,
        entry_ts=ENTRY_TS,
        expires_ts=None if expires_after is None else ENTRY_TS + expires_after,
        candles=candles,
        now_ms=last if now_ms is None else now_ms,
        **levels,
    )


@pytest.mark.parametrize(
    ("side", "bars", "outcome", "pnl"),
    [
        # TP1 (half closed, stop to break-even), then TP2: 0.5 * 2 % + 0.5 * 4 %
        ("long", [(100, 102.5, 100.5, 102), (102, 104.5, 101, 104)], "tp2", "3.0000"),
        ("short", [(100, 99.5, 97.5, 98), (98, 99, 95.5, 96)], "tp2", "3.0000"),
        # stopped before TP1
        ("long", [(100, 101, 99, 100), (100, 100.5, 97.9, 98)], "sl", "-2.0000"),
        ("short", [(100, 102.1, 99, 101)], "sl", "-2.0000"),
        # stop and TP1 inside one candle: the stop counts first (conservative)
        ("long", [(100, 102.5, 97.5, 101)], "sl", "-2.0000"),
        # a gap through the stop fills at the open
        ("long", [(100, 101, 99, 99.5), (97, 97.5, 96, 97)], "sl", "-3.0000"),
        # TP1, then back to the entry: the rest closes at break-even
        ("long", [(100, 102.5, 100.5, 101), (101, 101.5, 99.9, 100)], "tp1", "1.0000"),
    ],
)
def test_outcomes_and_pnl(side, bars, outcome, pnl):
    evaluation = _evaluate(_candles(*bars), side=side)
    assert evaluation.closed and evaluation.outcome == outcome
    assert evaluation.pnl_pct == Decimal(pnl)
    assert evaluation.closed_ts == ENTRY_TS + FIVE_MIN * (len(bars) - 1)


def test_still_running_signal_stays_open():
    evaluation = _evaluate(_candles((100, 101, 99, 100.5), (100.5, 102.5, 100.2, 101)))
    assert not evaluation.closed and evaluation.outcome == "open" and evaluation.pnl_pct is None
    assert evaluation.tp1_ts == ENTRY_TS + FIVE_MIN


def test_expiry_closes_at_the_open_of_the_first_candle_past_it():
    bars = [(100, 101, 99, 100.5), (100.5, 101, 99.5, 101), (101.5, 101.8, 101, 101.2)]
    evaluation = _evaluate(_candles(*bars), expires_after=2 * FIVE_MIN)
    assert evaluation.outcome == "expired" and evaluation.pnl_pct == Decimal("1.5000")


def test_expiry_without_later_candles_uses_the_last_close():
    evaluation = _evaluate(
        _candles((100, 101, 99, 100.5), (100.5, 101, 99.5, 99.25)),
        expires_after=2 * FIVE_MIN,
        now_ms=ENTRY_TS + 10 * FIVE_MIN,
    )
    assert evaluation.outcome == "expired" and evaluation.pnl_pct == Decimal("-0.7500")


def test_candles_before_the_entry_are_ignored():
    before = _candles((100, 110, 90, 100), start=ENTRY_TS - FIVE_MIN)  # would hit both stop and targets
    assert not _evaluate(before, now_ms=ENTRY_TS).closed


# -- the periodic task on the bundled candles ----------------------------------------------------------------------
SIGNAL_AT = datetime(2018, 1, 12, 13, 0, tzinfo=UTC)  # ETH/BTC long (see test_scanning)


def _closed_events(dispatched) -> list[int]:
    return [payload["signal_id"] for event, payload in dispatched if event == "signal.closed"]


@pytest.mark.usefixtures("isolated_signals_env")
@pytest.mark.django_db
def test_tracker_follows_a_real_signal_to_its_target(
    replay_market_data, dispatched, django_capture_on_commit_callbacks
):
    replay_market_data.advance_to(SIGNAL_AT)
    _, (signal,) = scan_run_now(market_data=replay_market_data)
    replay_market_data.advance_to(SIGNAL_AT + timedelta(minutes=5))
    assert signal_track_outcomes(market_data=replay_market_data) == []  # nothing decided yet
    replay_market_data.advance_to(SIGNAL_AT + timedelta(hours=24))
    with django_capture_on_commit_callbacks(execute=True):
        closed_ids = tasks.track_signal_outcomes()
        assert tasks.track_signal_outcomes() == []  # the next run: nothing left to close, nothing announced
    assert closed_ids == [signal.pk]
    signal.refresh_from_db()
    assert (signal.status, signal.outcome) == ("closed", "tp2")
    # PnL: half at TP1 (+1R) and half at TP2 (+2R), relative to the entry
    expected = 100 * ((signal.tp1 - signal.entry) + (signal.tp2 - signal.entry)) / 2 / signal.entry
    assert abs(signal.outcome_pnl_pct - expected) < Decimal("0.0001")
    assert signal.outcome_pnl_pct == Decimal("2.2536")
    assert SIGNAL_AT < signal.tp1_hit_at <= signal.closed_at <= SIGNAL_AT + timedelta(hours=24)
    assert _closed_events(dispatched) == [signal.pk]


@pytest.mark.usefixtures("isolated_signals_env")
@pytest.mark.django_db
def test_expired_signal_is_closed_as_expired(replay_market_data, dispatched):
    replay_market_data.advance_to(SIGNAL_AT)
    _, (signal,) = scan_run_now(market_data=replay_market_data)
    Signal.objects.filter(pk=signal.pk).update(expires_at=SIGNAL_AT + timedelta(minutes=10))
    replay_market_data.advance_to(SIGNAL_AT + timedelta(hours=1))
    (closed,) = signal_track_outcomes(market_data=replay_market_data)
    assert closed.outcome == "expired" and closed.outcome_pnl_pct is not None
    assert closed.closed_at == SIGNAL_AT + timedelta(minutes=15)  # the candle past the expiry (10:10 → 10:15 close)


class FailingFor:
    def __init__(self, inner, symbol):
        self.inner, self.symbol = inner, symbol

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def ohlcv(self, symbol, timeframe, limit):
        if symbol == self.symbol:
            raise RetryableMarketDataError("okx fetch_ohlcv: RequestTimeout")
        return self.inner.ohlcv(symbol, timeframe, limit)


@pytest.mark.usefixtures("isolated_signals_env")
@pytest.mark.django_db
def test_market_data_failure_for_one_signal_does_not_stop_the_others(replay_market_data, dispatched):
    replay_market_data.advance_to(SIGNAL_AT)
    _, (signal,) = scan_run_now(market_data=replay_market_data)
    other = SignalFactory(
        symbol=SymbolFactory(symbol="LTC/BTC"),
        candle_ts=datetime_to_ms(SIGNAL_AT) - 900_000,
        entry=Decimal("0.0175"),
        stop=Decimal("0.0170"),
        tp1=Decimal("0.0180"),
        tp2=Decimal("0.0185"),
    )
    replay_market_data.advance_to(SIGNAL_AT + timedelta(hours=24))
    closed = signal_track_outcomes(market_data=FailingFor(replay_market_data, "LTC/BTC"))
    assert [s.pk for s in closed] == [signal.pk]
    other.refresh_from_db()
    assert other.status == "open"  # retried on the next run


class CappedMarketData:
    """An exchange returning at most ``cap`` candles per request (OKX: 300)."""

    def __init__(self, inner, cap):
        self.inner, self.cap, self.requests = inner, cap, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def ohlcv(self, symbol, timeframe, limit):
        self.requests.append((timeframe, limit))
        return self.inner.ohlcv(symbol, timeframe, min(limit, self.cap))


@pytest.mark.usefixtures("isolated_signals_env")
@pytest.mark.django_db
def test_tracker_falls_back_to_15m_when_the_exchange_caps_5m_history(replay_market_data, dispatched):
    replay_market_data.advance_to(SIGNAL_AT)
    _, (signal,) = scan_run_now(market_data=replay_market_data)
    replay_market_data.advance_to(SIGNAL_AT + timedelta(hours=24))
    capped = CappedMarketData(replay_market_data, cap=100)  # 100 x 5m = 8 h 20 min: not back to the entry
    (closed,) = signal_track_outcomes(market_data=capped)
    assert [tf for tf, _ in capped.requests] == ["5m", "15m"]
    assert closed.pk == signal.pk and closed.outcome == "tp2" and closed.outcome_pnl_pct == Decimal("2.2536")
