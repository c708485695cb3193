"""Replay market data: the bundled real candles in ``data/`` served as if live, against a replay clock.

The clock is kept in the Django cache (``replay:clock_ms``), so every process of one deployment agrees on it (Redis)
— in the embedded default (LocMem, eager Celery) it simply lives in the one process. A run that must not move that
shared clock (``manage.py replay``) takes its own: ``with_own_clock()`` (same data, a private clock key). Nothing is served from the
future: ``ohlcv`` returns only candles whose close time (open + timeframe) is ``<=`` the clock, ``last_price`` is
the close of the last CLOSED 5m candle, ``funding_rate`` the last rate published at or before the clock.

A market is listed (``markets()``) from its first candle's open to its last candle's close: a market whose data
ended disappears from the list, as a delisted one would.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.cache import BaseCache, caches

from engine.candles import Candles, resample, timeframe_to_ms
from engine.errors import InvalidParameters
from signals.market_data.base import MarketData, MarketInfo, datetime_to_ms, ms_to_datetime
from signals.market_data.errors import FinalMarketDataError, SymbolUnavailable
from signals.market_data.price_cache import PriceCache, price_cache

SOURCE_TIMEFRAME = "5m"
SOURCE_TIMEFRAME_MS = 300_000
FUNDING_INTERVAL_MS = 8 * 3_600_000
CLOCK_CACHE_KEY = "replay:clock_ms"


@dataclass(frozen=True, eq=False)
class ReplayMarket:
    info: MarketInfo
    candles_5m: Candles
    funding_ts: np.ndarray  # int64 ms, aligned down to the 8h grid
    funding_rate: np.ndarray  # float64

    @property
    def listed_from_ms(self) -> int:
        return int(self.candles_5m.ts[0])

    @property
    def listed_until_ms(self) -> int:
        """Close time of the last candle."""
        return int(self.candles_5m.ts[-1]) + SOURCE_TIMEFRAME_MS


class ReplayDataset:
    """All bundled markets, with 15m/1h (and any multiple of 5m) resampled lazily and memoised."""

    def __init__(self, markets: dict[str, ReplayMarket]):
        if not markets:
            raise FinalMarketDataError("the replay dataset holds no market")
        self.markets = markets
        self._resampled: dict[tuple[str, str], Candles] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path) -> ReplayDataset:
        manifest = json.loads((directory / "manifest.json").read_text())
        markets: dict[str, ReplayMarket] = {}
        for entry in manifest["markets"]:
            frame = pd.read_feather(directory / entry["candles_5m"])
            candles = Candles.from_frame(frame.sort_values("date", kind="stable"))
            funding_ts = np.empty(0, dtype=np.int64)
            funding_rate = np.empty(0, dtype=np.float64)
            if entry.get("funding_8h"):
                funding = pd.read_feather(directory / entry["funding_8h"])
                floored = funding["date"].dt.floor("8h").dt.as_unit("ms").astype("int64").to_numpy()
                funding_ts, funding_rate = floored, funding["open"].to_numpy(dtype=np.float64)
            markets[entry["symbol"]] = ReplayMarket(
                info=_market_info(entry), candles_5m=candles, funding_ts=funding_ts, funding_rate=funding_rate
            )
        return cls(markets)

    def market(self, symbol: str) -> ReplayMarket:
        try:
            return self.markets[symbol]
        except KeyError:
            raise SymbolUnavailable(f"{symbol} is not in the replay data") from None

    def candles(self, symbol: str, timeframe: str) -> Candles:
        """The full series (closed or not: callers filter by the clock)."""
        market = self.market(symbol)
        if timeframe == SOURCE_TIMEFRAME:
            return market.candles_5m
        with self._lock:
            cached = self._resampled.get((symbol, timeframe))
        if cached is not None:
            return cached
        try:
            minutes = timeframe_to_ms(timeframe) // 60_000
            series = resample(market.candles_5m, minutes, source_timeframe_ms=SOURCE_TIMEFRAME_MS)
        except InvalidParameters as error:
            raise FinalMarketDataError(f"replay cannot serve {timeframe} candles: {error}") from error
        with self._lock:
            self._resampled[(symbol, timeframe)] = series
        return series

    @property
    def first_ms(self) -> int:
        return min(m.listed_from_ms for m in self.markets.values())

    @property
    def last_ms(self) -> int:
        return max(m.listed_until_ms for m in self.markets.values())

    def listed_at(self, now_ms: int) -> list[ReplayMarket]:
        return [m for m in self.markets.values() if m.listed_from_ms <= now_ms <= m.listed_until_ms]

    def next_listed_ms(self, after_ms: int) -> int | None:
        """The earliest time > ``after_ms`` at which some market is listed (jumps over holes between datasets)."""
        best = None
        for m in self.markets.values():
            if m.listed_until_ms <= after_ms:
                continue
            candidate = max(after_ms + 1, m.listed_from_ms)
            best = candidate if best is None else min(best, candidate)
        return best


def _decimal_or_none(value) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _market_info(entry: dict) -> MarketInfo:
    return MarketInfo(
        symbol=entry["symbol"],
        base=entry["base"],
        quote=entry["quote"],
        settle=entry.get("settle"),
        kind=entry["kind"],
        tick_size=_decimal_or_none(entry.get("tick_size")),
        step_size=_decimal_or_none(entry.get("step_size")),
        min_quantity=_decimal_or_none(entry.get("min_quantity")),
        min_notional=_decimal_or_none(entry.get("min_notional")),
        contract_size=Decimal(str(entry.get("contract_size", "1"))),
        max_leverage=entry.get("max_leverage"),
        active=True,
    )


@lru_cache(maxsize=4)
def load_dataset(directory: str) -> ReplayDataset:
    """Loaded once per process and directory (a few MB)."""
    return ReplayDataset.load(Path(directory))


class ReplayMarketData(MarketData):
    name = "replay"

    def __init__(
        self,
        dataset: ReplayDataset | None = None,
        *,
        cache: BaseCache | None = None,
        prices: PriceCache | None = None,
        clock_key: str = CLOCK_CACHE_KEY,
    ):
        self.dataset = dataset if dataset is not None else load_dataset(str(settings.REPLAY_DATA_DIR))
        self._cache = cache
        self.prices = prices if prices is not None else price_cache()
        self.clock_key = clock_key

    def with_own_clock(self) -> ReplayMarketData:
        """The same data on a private clock (its own cache key): moving it never touches the shared clock that
        the workers, the PnL windows and the backtests read. ``reset_clock()`` forgets it."""
        return ReplayMarketData(self.dataset, cache=self._cache, prices=self.prices, clock_key=f"{CLOCK_CACHE_KEY}:run:{uuid.uuid4().hex}")

    @property
    def cache(self) -> BaseCache:
        return self._cache if self._cache is not None else caches["default"]

    # -- clock -----------------------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        value = self.cache.get(self.clock_key)
        return int(value) if value is not None else self.dataset.last_ms  # unset: the end of the data

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    def advance_to(self, moment: datetime | int) -> int:
        """Set the clock (a datetime or ms). Going back is allowed (a new replay); returns the new ms."""
        ts = moment if isinstance(moment, int) else datetime_to_ms(moment)
        self.cache.set(self.clock_key, ts, timeout=None)
        return ts

    def step(self, milliseconds: int = 900_000) -> int:
        """Advance by ``milliseconds``; a step landing where no market is listed jumps to the next listing."""
        target = self.now_ms() + milliseconds
        if not self.dataset.listed_at(target):
            following = self.dataset.next_listed_ms(target)
            if following is not None:
                target = following + (-following) % milliseconds  # keep to the step grid
        return self.advance_to(target)

    def reset_clock(self) -> None:
        self.cache.delete(self.clock_key)

    # -- data ------------------------------------------------------------------------------------------------------
    def ohlcv(self, symbol: str, timeframe: str, limit: int) -> Candles:
        series = self.dataset.candles(symbol, timeframe)
        return series.closed_at(self.now_ms(), timeframe_to_ms(timeframe)).tail(limit)

    def last_price(self, symbol: str) -> Decimal:
        now_ms = self.now_ms()

        def fetch() -> Decimal:
            closed = self.dataset.market(symbol).candles_5m.closed_at(now_ms, SOURCE_TIMEFRAME_MS)
            if len(closed) == 0:
                raise SymbolUnavailable(f"{symbol} has no candle closed at {ms_to_datetime(now_ms):%Y-%m-%d %H:%M}")
            return Decimal(repr(float(closed.close[-1])))

        # the key carries the clock: a replay step is a new moment even when it comes a millisecond later
        return self.prices.get_or_fetch(f"replay:{symbol}:{now_ms}", fetch)

    def funding_rate(self, symbol: str) -> Decimal | None:
        market = self.dataset.market(symbol)
        index = int(np.searchsorted(market.funding_ts, self.now_ms(), side="right")) - 1
        if index < 0:
            return None
        return Decimal(repr(float(market.funding_rate[index])))

    def markets(self) -> list[MarketInfo]:
        return [m.info for m in self.dataset.listed_at(self.now_ms())]
