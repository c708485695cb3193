"""The market-data port: what the scanner, the outcome tracker and the executors need from an exchange.

Two implementations (``signals.market_data.replay.ReplayMarketData`` and ``signals.market_data.live.CcxtMarketData``);
``signals.market_data.get_market_data()`` picks one from ``settings.MARKET_DATA_SOURCE``.
Both serve CLOSED candles only: a candle whose close time (open + timeframe) is after ``now()`` is never returned.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from engine.candles import Candles


@dataclass(frozen=True)
class MarketInfo:
    """Static metadata of one market, in the units order sizing needs (Decimal)."""

    symbol: str  # ccxt unified, e.g. "BTC/USDT:USDT"
    base: str
    quote: str
    settle: str | None
    kind: str  # "swap" | "spot" | "future"
    tick_size: Decimal | None  # price increment
    step_size: Decimal | None  # amount increment (in contracts for contract markets)
    min_quantity: Decimal | None
    min_notional: Decimal | None
    contract_size: Decimal
    max_leverage: int | None
    active: bool = True


def ms_to_datetime(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def datetime_to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime; market-data times are timezone-aware UTC")
    return round(moment.timestamp() * 1000)


class MarketData(abc.ABC):
    """Synchronous facade used by services and Celery tasks."""

    #: short name used in cache keys and scan records ("replay", "okx", …)
    name: str = "market-data"

    @abc.abstractmethod
    def ohlcv(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The last ``limit`` CLOSED candles (ascending open time). Raises ``SymbolUnavailable`` for an unknown
        or delisted market, ``RetryableMarketDataError`` for transient trouble."""

    @abc.abstractmethod
    def last_price(self, symbol: str) -> Decimal:
        """Last traded price, through the shared 30 s price cache."""

    @abc.abstractmethod
    def funding_rate(self, symbol: str) -> Decimal | None:
        """Current funding rate per interval (0.0001 = 0.01 %), ``None`` when the market has none/unknown."""

    @abc.abstractmethod
    def markets(self) -> list[MarketInfo]:
        """Markets currently listed and tradeable."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The time candles are judged closed against: the replay clock in replay mode, the wall clock live."""

    def now_ms(self) -> int:
        return datetime_to_ms(self.now())

    def history(self) -> MarketData:
        """The market data a backtest reads: everything recorded up to now. Live: itself. The replay: its data up to
        the end, whatever time a replay clock shows (a backtest studies the past, the recorded data is all past)."""
        return self

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release network clients (no-op for implementations without any)."""
