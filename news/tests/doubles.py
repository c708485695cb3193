"""A stand-in for the `signals.market_data` port (same sync facade), for tests that must control prices exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from engine.candles import Candles

FIFTEEN_MINUTES_MS = 900_000


class StubMarketData:
    """Flat 15m candles (range ``2 × half_range`` → ATR = that range) ending at ``now``, and a chosen last price."""

    def __init__(
        self,
        *,
        now: datetime,
        prices: dict[str, float],
        last_prices: dict[str, float] | None = None,
        half_range: float = 0.5,
        bars: int = 100,
        funding: dict[str, Decimal] | None = None,
    ) -> None:
        self._now = now
        self._prices = prices
        self._last = last_prices or {}
        self._half_range = half_range
        self._bars = bars
        self._funding = funding or {}
        self.ohlcv_calls: list[tuple[str, str, int]] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def ohlcv(self, symbol: str, timeframe: str, limit: int) -> Candles:
        self.ohlcv_calls.append((symbol, timeframe, limit))
        if symbol not in self._prices:
            raise KeyError(symbol)
        now_ms = int(self._now.timestamp() * 1000)
        last_open = now_ms // FIFTEEN_MINUTES_MS * FIFTEEN_MINUTES_MS - FIFTEEN_MINUTES_MS  # last closed candle
        ts = np.arange(last_open - (self._bars - 1) * FIFTEEN_MINUTES_MS, last_open + 1, FIFTEEN_MINUTES_MS)
        price = self._prices[symbol]
        flat = np.full(len(ts), price)
        return Candles(ts, flat, flat + self._half_range, flat - self._half_range, flat, np.full(len(ts), 1000.0))

    def last_price(self, symbol: str) -> Decimal:
        return Decimal(str(self._last.get(symbol, self._prices[symbol])))

    def funding_rate(self, symbol: str) -> Decimal | None:
        return self._funding.get(symbol)

    def markets(self) -> list:
        return []


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
