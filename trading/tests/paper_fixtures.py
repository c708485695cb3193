"""Fixtures of the paper-trading tests: a scripted market (prices, clock, candles) and recorded domain events."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from engine.candles import Candles

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday


class ScriptedMarket:
    """A ``signals.market_data.MarketData`` stand-in the test drives: set prices, the clock and 5m candles."""

    name = "scripted"

    def __init__(self):
        self.prices: dict[str, Decimal] = {}
        self.clock: datetime = T0
        self.candles: dict[str, list[tuple[int, float, float, float, float]]] = {}

    def now(self) -> datetime:
        return self.clock

    def now_ms(self) -> int:
        return int(self.clock.timestamp() * 1000)

    def last_price(self, symbol: str) -> Decimal:
        return self.prices[symbol]

    def funding_rate(self, symbol: str):
        return None

    def ohlcv(self, symbol: str, timeframe: str, limit: int) -> Candles:
        rows = [r for r in self.candles.get(symbol, []) if r[0] + 300_000 <= self.now_ms()][-limit:]
        if not rows:
            return Candles.empty()
        a = np.array(rows, dtype=float)
        return Candles(
            ts=a[:, 0].astype(np.int64),
            open=a[:, 1],
            high=a[:, 2],
            low=a[:, 3],
            close=a[:, 4],
            volume=np.ones(len(rows)),
        )

    def add_candle(self, symbol: str, ts: datetime, o, h, low, c) -> None:
        self.candles.setdefault(symbol, []).append(
            (int(ts.timestamp() * 1000), float(o), float(h), float(low), float(c))
        )


@pytest.fixture
def market(monkeypatch) -> ScriptedMarket:
    m = ScriptedMarket()
    monkeypatch.setattr("trading.market.market_data", lambda: m)
    return m


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, dict]]:
    """Every ``config.events.publish`` call, in order, instead of dispatching it."""
    calls: list[tuple[str, dict]] = []

    def record(event, **payload):
        calls.append((event, payload))

    monkeypatch.setattr("config.events.publish", record)
    return calls


@pytest.fixture
def paper_settings(settings):
    settings.PAPER_STARTING_BALANCE = Decimal("10000")
    settings.PAPER_TAKER_FEE = Decimal("0.0005")
    settings.PAPER_MAKER_FEE = Decimal("0.0002")
    settings.PAPER_SLIPPAGE = Decimal("0.001")
    settings.MAX_LEVERAGE = 20
    settings.TRADING_TP1_CLOSE_FRACTION = 0.5
    settings.TRADING_TRAILING_MODE = "atr"
    settings.TRADING_TRAILING_ATR_MULT = 1.0
    settings.TRADING_TRAILING_ACTIVATION_R = 1.0
    settings.TRADING_POSITION_EXPIRY_HOURS = 24
    settings.TRADING_MONITOR_TIMEFRAME = "5m"
    settings.MARKET_DATA_SOURCE = "replay"
    settings.PAPER_FUNDING_RATE = "0.0001"
    return settings


def paper_auto_trader():
    """An auto-trading paper user who accepts every source, many positions and no sector filter (load/fault tests)."""
    from accounts.tests.factories import TelegramUserFactory

    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)  # more positions, news and flow trading
    prefs = user.preferences
    prefs.correlation_filter = False
    prefs.max_open_positions = 10
    prefs.news_signals = prefs.flow_signals = True
    prefs.position_size_pct = Decimal("1")
    prefs.paper_mode = True
    prefs.save()
    return user
