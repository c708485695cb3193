"""The replay's order flow from several venues' recorded tapes (``FLOW_SOURCE=recorded``, data/flow/): served at the
replay clock like the live ccxt source, aggregated across exchanges, alerts carry every agreeing exchange."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from signals.flow_monitor import FlowMonitorParams, flow_cycle
from signals.flow_sources import RecordedFlowSource, flow_source_from_settings
from signals.market_data import get_market_data
from signals.models import Signal
from signals.tests.factories import SymbolFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("isolated_signals_env")]

TAPE_START_MS = int(datetime(2021, 11, 17, 15, 50, tzinfo=UTC).timestamp() * 1000)


def test_the_replay_default_is_the_recorded_tapes_of_three_venues(settings):
    settings.FLOW_SOURCE = "recorded"
    source = flow_source_from_settings()
    assert isinstance(source, RecordedFlowSource) and source.resolution_ms == 60_000
    assert {exchange for exchange, _ in source.tapes} == {"okx", "bybit", "mexc"}
    snapshot = source.fetch(symbols=["XRP/USDT", "BTC/USDT"], now_ms=TAPE_START_MS + 10 * 60_000, lookback_ms=120_000)
    assert set(snapshot.trades) == {("okx", "XRP/USDT"), ("bybit", "XRP/USDT"), ("mexc", "XRP/USDT")}
    for trades in snapshot.trades.values():  # nothing from the future, nothing older than the look-back
        assert trades.ts.min() >= TAPE_START_MS + 8 * 60_000 and trades.ts.max() <= TAPE_START_MS + 10 * 60_000
    assert not source.covers(start_ms=0, end_ms=TAPE_START_MS - 1)


def test_minute_cycles_over_the_tapes_give_flow_signals_agreed_by_several_exchanges(settings, dispatched):
    settings.FLOW_SOURCE = "recorded"
    settings.FLOW_SYMBOLS = ["XRP/USDT"]
    SymbolFactory(symbol="XRP/USDT:USDT", base="XRP")
    market_data, source, params = get_market_data(), flow_source_from_settings(), FlowMonitorParams.from_settings()
    alerts, signal_ids = [], []
    for minute in range(0, 62):
        now_ms = TAPE_START_MS + minute * 60_000 + 5_000
        market_data.advance_to(now_ms)
        result = flow_cycle(now_ms=now_ms, source=source, params=params, market_data=market_data)
        assert result.ran and result.skipped_windows == []  # one-minute resolution: every window is scored
        alerts += result.alerts
        signal_ids += result.signal_ids
    assert alerts and signal_ids
    for signal in Signal.objects.filter(pk__in=signal_ids):
        assert signal.source == "flow" and signal.indicators["flow_agreeing"] >= 0.6
        assert {"flow_okx", "flow_bybit", "flow_mexc"} <= set(signal.indicators)
        assert len(signal.confirmations) >= 2  # the agreeing exchanges
