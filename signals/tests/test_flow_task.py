"""The periodic flow task end to end on the replay proxy: beat entry, registration, resolution guard, domain event."""

from __future__ import annotations

import pytest

from signals.flow_monitor import FlowMonitorParams
from signals.market_data import get_market_data
from signals.models import Signal
from signals.tests.factories import SymbolFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("isolated_signals_env")]

FIVE_MIN = 300_000


@pytest.fixture
def replay_flow(settings):
    settings.FLOW_SOURCE = "replay"
    settings.FLOW_SYMBOLS = ["XRP/USDT", "BTC/USDT"]  # the bundled replay data has XRP only
    settings.FLOW_WINDOWS = ["1m", "5m", "15m"]
    settings.FLOW_STABLE_WINDOWS = 2
    settings.FLOW_COOLDOWN_MINUTES = 60
    market_data = get_market_data()
    candles = market_data.dataset.candles("XRP/USDT:USDT", "5m")
    return market_data, candles


def test_beat_runs_the_registered_flow_task_every_minute_on_the_scan_queue(settings):
    import signals.tasks_flow  # noqa: F401 - what the worker imports through app.conf.imports
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["flow-monitor"]
    assert "signals.tasks_flow" in app.conf.imports  # the worker registers it (no autodiscovery outside tasks.py)
    assert entry["task"] == "signals.tasks_flow.flow_monitor_cycle" and entry["task"] in app.tasks
    assert entry["options"]["queue"] == "scan" and entry["options"]["expires"] < 60
    assert entry["schedule"].remaining_estimate(entry["schedule"].now()).total_seconds() <= 60


def test_flow_task_scores_the_replay_proxy_and_announces_flow_signals(
    replay_flow, dispatched, django_capture_on_commit_callbacks
):
    from signals.tasks_flow import flow_monitor_cycle

    market_data, candles = replay_flow
    SymbolFactory(symbol="XRP/USDT:USDT", base="XRP")
    start = int(candles.ts[600])
    summaries = []
    with django_capture_on_commit_callbacks(execute=True):
        for step in range(48):  # four hours of 5m steps, a few seconds after each candle close
            market_data.advance_to(start + step * FIVE_MIN + 5_000)
            summaries.append(flow_monitor_cycle.apply().get())

    assert all(s["ran"] for s in summaries)
    # 1m windows are finer than the proxy's 5m candles: never scored (one candle is not five stable windows)
    assert all(s["skipped_windows"] == ["1m"] for s in summaries)
    assert all(s["failures"] == 1 for s in summaries)  # BTC/USDT has no replay data; XRP still counts
    alerts = [a for s in summaries for a in s["alerts"]]
    signal_ids = [pk for s in summaries for pk in s["signal_ids"]]
    assert alerts and all(a.split(":")[0] in {"5m", "15m"} and a.split(":")[1] == "XRP/USDT" for a in alerts)
    signals = list(Signal.objects.filter(pk__in=signal_ids))
    assert signals and all(s.source == "flow" and s.symbol.symbol == "XRP/USDT:USDT" for s in signals)
    # each flow signal is announced once as a domain event (Telegram broadcast, executors)
    assert [e for e in dispatched if e[0] == "signal.created"] == [
        ("signal.created", {"signal_id": pk}) for pk in signal_ids
    ]

    # the same minute again (a duplicate delivery or a second worker) does nothing
    market_data.advance_to(start + 47 * FIVE_MIN + 30_000)
    assert flow_monitor_cycle.apply().get()["ran"] is False


def test_params_follow_settings(replay_flow):
    params = FlowMonitorParams.from_settings()
    assert params.symbols == ("XRP/USDT", "BTC/USDT") and params.flow.stable_windows == 2
    assert params.cooldown_ms == 60 * 60_000
