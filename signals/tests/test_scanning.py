"""The market scan on the bundled real candles: fan-out on the ``scan`` queue, signals stored once and announced once
through ``signal.created``, muted symbols respected, bad input skipped with a reason while the rest completes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from django.conf import settings

from engine.candles import Candles
from signals import tasks
from signals.market_data import RetryableMarketDataError, SymbolUnavailable
from signals.market_data.base import datetime_to_ms
from signals.models import ScanRun, Signal, Symbol
from signals.scanning import scan_batch_run, scan_run_now, scan_start
from signals.services import symbol_mute

pytestmark = [pytest.mark.usefixtures("isolated_signals_env"), pytest.mark.django_db]

# The replay finds exactly one signal at this candle close: ETH/BTC long on the 12:45 15m candle (all 4 checks).
SCAN_AT = datetime(2018, 1, 12, 13, 0, tzinfo=UTC)
SCAN_MS = datetime_to_ms(SCAN_AT)
ETH = "ETH/BTC"
BTC_PAIRS = ["DASH/BTC", "ETC/BTC", ETH, "LTC/BTC", "NXT/BTC", "XLM/BTC"]


def _created(dispatched) -> list[int]:
    return [payload["signal_id"] for event, payload in dispatched if event == "signal.created"]


def test_scan_stores_the_signal_and_announces_it_once(
    replay_market_data, dispatched, django_capture_on_commit_callbacks
):
    replay_market_data.advance_to(SCAN_AT)
    with django_capture_on_commit_callbacks(execute=True):
        run, created = scan_run_now(market_data=replay_market_data)
    assert [(s.symbol.symbol, s.side) for s in created] == [(ETH, "long")]
    signal = created[0]
    assert signal.candle_ts == SCAN_MS - 900_000 and signal.created_at == SCAN_AT
    assert signal.confirmations == ["trend", "volume", "momentum", "structure"]
    assert signal.risk_level == "low"
    assert set(signal.indicators) >= {"rsi", "adx", "volume_ratio", "sr_distance_atr"}
    # prices are Decimals on the market's tick grid, stop below and targets above the entry at 1R / 2R
    tick = Decimal("0.00000001")
    for level in (signal.entry, signal.stop, signal.tp1, signal.tp2):
        assert level == level.quantize(tick)
    assert signal.stop < signal.entry < signal.tp1 < signal.tp2
    assert abs((signal.tp2 - signal.entry) - 2 * (signal.entry - signal.stop)) <= 2 * tick
    assert _created(dispatched) == [signal.pk]
    signal.refresh_from_db()
    assert signal.published_at is not None
    # the scan is recorded for the admin health page
    assert (run.symbols_total, run.batches_done, run.batches_total) == (6, run.batches_total, run.batches_total)
    assert run.signals_created == 1 and run.candidates == 1 and run.finished_at is not None
    assert run.source == "replay" and run.scan_time == SCAN_AT


def test_scanning_the_same_candle_again_creates_and_announces_nothing(
    replay_market_data, dispatched, django_capture_on_commit_callbacks
):
    """A retried batch or a beat firing twice: the dedupe key / one-open-per-side constraint refuse the duplicate."""
    replay_market_data.advance_to(SCAN_AT)
    with django_capture_on_commit_callbacks(execute=True):
        scan_run_now(market_data=replay_market_data)
        second_run, created = scan_run_now(market_data=replay_market_data)
        again = scan_batch_run(scan_run_id=None, symbols=[ETH], now_ms=SCAN_MS, market_data=replay_market_data)
    assert created == [] and again.created == []
    assert second_run.signals_refused == 1 and again.refused == 1
    assert Signal.objects.count() == 1
    assert len(_created(dispatched)) == 1


def test_a_signal_on_a_later_candle_is_refused_while_one_is_open(replay_market_data, dispatched):
    replay_market_data.advance_to(SCAN_AT)
    scan_run_now(market_data=replay_market_data)
    signal = Signal.objects.get()
    # same symbol/side, a later candle: a different dedupe key, still refused by the open-signal constraint
    Signal.objects.filter(pk=signal.pk).update(candle_ts=signal.candle_ts - 900_000, dedupe_key="older")
    _, created = scan_run_now(market_data=replay_market_data)
    assert created == []
    assert Signal.objects.count() == 1


def test_muted_symbol_gets_no_signal_and_is_recorded_as_skipped(replay_market_data, dispatched):
    replay_market_data.advance_to(SCAN_AT)
    scan_start(market_data=replay_market_data)  # creates the Symbol rows
    symbol_mute(symbol=Symbol.objects.get(symbol=ETH))
    run, created = scan_run_now(market_data=replay_market_data)
    assert created == [] and Signal.objects.count() == 0
    assert run.skipped[ETH] == "muted globally by an operator"
    assert run.symbols_total == 6 and run.symbols_skipped >= 1


class FlakyMarketData:
    """The replay market data with scripted trouble per symbol (delisted mid-scan, timeout, broken candles)."""

    def __init__(self, inner, trouble: dict[str, str]):
        self.inner, self.trouble = inner, trouble
        self.name = inner.name

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def ohlcv(self, symbol, timeframe, limit):
        kind = self.trouble.get(symbol)
        if kind == "delisted":
            raise SymbolUnavailable(f"{symbol}: contract does not exist")
        if kind == "timeout":
            raise RetryableMarketDataError("okx fetch_ohlcv: RequestTimeout: timed out")
        if kind == "crash":
            raise KeyError("unexpected payload")
        candles = self.inner.ohlcv(symbol, timeframe, limit)
        if kind == "missing":
            return Candles.from_ohlcv([])
        if kind == "nan_volume" and timeframe == "15m":
            volume = candles.volume.copy()
            volume[-3] = np.nan
            return Candles(candles.ts, candles.open, candles.high, candles.low, candles.close, volume)
        if kind == "zero_volume" and timeframe == "15m":
            volume = candles.volume.copy()
            volume[-40:] = 0.0
            return Candles(candles.ts, candles.open, candles.high, candles.low, candles.close, volume)
        if kind == "gap" and timeframe == "15m":
            keep = np.ones(len(candles), dtype=bool)
            keep[-10] = False
            return Candles(*(getattr(candles, f)[keep] for f in ("ts", "open", "high", "low", "close", "volume")))
        return candles


def test_bad_symbols_are_skipped_with_a_reason_and_the_scan_completes(replay_market_data, dispatched, caplog):
    replay_market_data.advance_to(SCAN_AT)
    trouble = {
        "DASH/BTC": "delisted",
        "ETC/BTC": "timeout",
        "LTC/BTC": "nan_volume",
        "NXT/BTC": "missing",
        "XLM/BTC": "zero_volume",
    }
    flaky = FlakyMarketData(replay_market_data, trouble)
    caplog.set_level("INFO", logger="signals.scanning")
    run, created = scan_run_now(market_data=flaky)
    assert [s.symbol.symbol for s in created] == [ETH]  # the healthy symbol still gets its signal
    assert set(run.skipped) == set(trouble)
    assert "unavailable (delisted?)" in run.skipped["DASH/BTC"]
    assert "exchange error, retry next scan" in run.skipped["ETC/BTC"]
    assert "NaN" in run.skipped["LTC/BTC"]
    assert run.skipped["NXT/BTC"] == "no closed 15m candles"
    assert "zero-volume" in run.skipped["XLM/BTC"]
    assert run.finished_at is not None and run.symbols_scanned == 1 and run.symbols_skipped == 5
    for symbol in trouble:
        assert f"{symbol} skipped" in caplog.text


@pytest.mark.parametrize("kind", ["gap", "crash"])
def test_gaps_and_unexpected_errors_skip_only_that_symbol(replay_market_data, dispatched, kind):
    replay_market_data.advance_to(SCAN_AT)
    scan_start(market_data=replay_market_data)  # the Symbol rows
    result = scan_batch_run(
        scan_run_id=None,
        symbols=["LTC/BTC", ETH],
        now_ms=SCAN_MS,
        market_data=FlakyMarketData(replay_market_data, {"LTC/BTC": kind}),
    )
    assert list(result.skipped) == ["LTC/BTC"]
    assert ("gap" if kind == "gap" else "internal error: KeyError") in result.skipped["LTC/BTC"]
    assert [s.symbol.symbol for s in result.created] == [ETH]


def test_symbol_delisted_between_scans_is_deactivated_and_not_scanned(replay_market_data, dispatched):
    replay_market_data.advance_to(datetime(2018, 1, 30, 4, 45, tzinfo=UTC))
    assert "ETC/BTC" in [symbol for batch in scan_start(market_data=replay_market_data).batches for symbol in batch]
    replay_market_data.advance_to(datetime(2018, 1, 30, 4, 55, tzinfo=UTC))  # ETC/BTC's last candle closed 04:50
    plan = scan_start(market_data=replay_market_data)
    scanned = [symbol for batch in plan.batches for symbol in batch]
    assert "ETC/BTC" not in scanned and ETH in scanned
    assert Symbol.objects.get(symbol="ETC/BTC").is_active is False


# -- the Celery tasks and their beat entries -----------------------------------------------------------------------
def test_scan_markets_task_fans_out_batches_on_the_scan_queue(replay_market_data, dispatched, monkeypatch, settings):
    settings.SIGNAL_SCAN_BATCH_SIZE = 4
    settings.SIGNAL_SCAN_DELAY_SECONDS = 7
    replay_market_data.advance_to(datetime(2018, 1, 12, 13, 2, 3, tzinfo=UTC))  # a beat firing late
    sent = []
    monkeypatch.setattr(tasks.scan_batch, "apply_async", lambda **kwargs: sent.append(kwargs))
    summary = tasks.scan_markets()
    assert summary["batches"] == 2 and len(sent) == 2
    assert all(call["queue"] == "scan" and call["countdown"] == 7 for call in sent)
    assert [call["kwargs"]["symbols"] for call in sent] == [BTC_PAIRS[:4], BTC_PAIRS[4:]]
    assert {call["kwargs"]["now_ms"] for call in sent} == {SCAN_MS}  # pinned to the candle close just passed
    # the worker side: each batch task stores what it finds; delivered twice (acks_late redelivery) it stays once
    for call in sent + sent:
        tasks.scan_batch(**call["kwargs"])
    run = ScanRun.objects.get(pk=summary["scan_run_id"])
    assert run.batches_done == 4 and run.signals_created == 1 and run.signals_refused == 1
    assert Signal.objects.filter(symbol__symbol=ETH, side="long").count() == 1


def test_scan_tasks_are_routed_to_the_scan_queue_and_retry_on_transient_errors():
    from config.celery import app

    assert app.amqp.router.route({}, "signals.tasks.scan_batch")["queue"].name == "scan"
    assert RetryableMarketDataError in tasks.scan_markets.autoretry_for
    assert tasks.scan_batch.acks_late and tasks.scan_markets.acks_late


def test_beat_schedule_runs_the_scan_at_every_15m_close_and_tracks_outcomes_every_minute():
    from celery.schedules import crontab

    scan = settings.CELERY_BEAT_SCHEDULE["scan-markets"]
    assert scan["task"] == "signals.tasks.scan_markets"
    assert scan["schedule"] == crontab(minute="*/15")
    assert scan["options"]["queue"] == "scan"
    track = settings.CELERY_BEAT_SCHEDULE["track-signal-outcomes"]
    assert track["task"] == "signals.tasks.track_signal_outcomes" and track["schedule"] == 60.0


@pytest.mark.django_db(transaction=True)  # the scheduler closes connections that sit inside a transaction
def test_django_celery_beat_installs_the_scan_entry():
    """The DatabaseScheduler (settings.CELERY_BEAT_SCHEDULER) turns the settings entries into PeriodicTask rows."""
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from config.celery import app

    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
    scheduler = DatabaseScheduler(app=app)
    assert "scan-markets" in scheduler.schedule
    task = PeriodicTask.objects.get(name="scan-markets")
    assert task.task == "signals.tasks.scan_markets" and task.enabled
    assert task.crontab.minute == "*/15" and task.queue == "scan"
    assert PeriodicTask.objects.get(name="track-signal-outcomes").interval.every == 60


def test_a_new_signal_reaches_the_broadcaster_and_the_executor_through_one_event(
    replay_market_data, monkeypatch, django_capture_on_commit_callbacks
):
    """The real dispatcher (config.events): every consumer of ``signal.created`` gets the signal id, exactly once.

    The consumers live in other apps (and on other workers): they are sent by name, as to a remote worker."""
    from config.celery import app

    received: list[tuple[str, dict]] = []
    monkeypatch.setattr("config.events.task_modules_load", lambda: None)
    monkeypatch.setattr(app, "tasks", {})
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    monkeypatch.setattr(app, "send_task", lambda name, kwargs=None, **_: received.append((name, kwargs)))
    replay_market_data.advance_to(SCAN_AT)
    with django_capture_on_commit_callbacks(execute=True):
        _, (signal,) = scan_run_now(market_data=replay_market_data)
        scan_run_now(market_data=replay_market_data)  # the beat firing twice
    assert sorted(name for name, _ in received) == sorted(settings.DOMAIN_EVENT_CONSUMERS["signal.created"])
    assert {"telegram_bridge.tasks.broadcast_signal", "trading.tasks.execute_signal"} <= {n for n, _ in received}
    assert all(kwargs == {"signal_id": signal.pk} for _, kwargs in received)
