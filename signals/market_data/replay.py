"""Replay market data: the bundled real candles in ``data/`` served as if live, against a replay clock.

Two kinds of clock, each under its own key in the Django cache (Redis: shared by every process of one deployment;
LocMem in the embedded default, where there is one process):

* ``RunningReplayClock`` (``REPLAY_SPEED`` > 0, the production-like processes): advances with the wall clock,
  ``REPLAY_SPEED`` replay seconds per second, from ``REPLAY_START`` (default: the first warmed-up candle). Its anchor
  (replay time, wall time, speed) is written once with ``cache.add`` under ``replay:clock:running``, so web, worker,
  beat and bridge read the same time; it jumps over the years where no market has data and holds at the end.
* ``SteppedReplayClock`` (``REPLAY_SPEED=0``, tests, and the private clocks of ``replay_run`` — ``manage.py replay``
  and ``manage.py demo``): moves only when told (``advance_to`` / ``step``); unset, it stands at the end of the data.
  ``with_own_clock()`` gives a run the same data on a stepped clock under a key of its own (and
  ``signals.market_data.market_data_override`` makes it what the run's thread reads), so a replay never moves (or
  rewinds) the clock the running processes read.

Nothing is served from the future: ``ohlcv`` returns only candles whose close time (open + timeframe) is ``<=`` the
clock, ``last_price`` is the close of the last CLOSED 5m candle, ``funding_rate`` the last rate published at or before
the clock.

A market is listed (``markets()``) from its first candle's open to its last candle's close: a market whose data
ended disappears from the list, as a delisted one would.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.cache import BaseCache, caches

from engine.candles import Candles, resample, timeframe_to_ms
from engine.errors import InvalidParameters
from engine.strategy import SIGNAL_TIMEFRAME_MS, StrategyParams, bars_needed
from signals.market_data.base import MarketData, MarketInfo, datetime_to_ms, ms_to_datetime
from signals.market_data.errors import FinalMarketDataError, SymbolUnavailable
from signals.market_data.price_cache import PriceCache, price_cache

SOURCE_TIMEFRAME = "5m"
SOURCE_TIMEFRAME_MS = 300_000
FUNDING_INTERVAL_MS = 8 * 3_600_000
CLOCK_CACHE_KEY = "replay:clock_ms"  # the stepped clock of REPLAY_SPEED=0 processes (tests, a paused deployment)
RUNNING_CLOCK_CACHE_KEY = "replay:clock:running"  # the anchor of the running clock of the production-like processes


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

    def listed_spans(self) -> list[tuple[int, int]]:
        """The merged [from, until] intervals in which some market is listed, in time order."""
        spans: list[tuple[int, int]] = []
        for start, end in sorted((m.listed_from_ms, m.listed_until_ms) for m in self.markets.values()):
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        return spans

    def advance_listed(self, from_ms: int, elapsed_ms: int) -> int:
        """``from_ms`` moved forward by ``elapsed_ms`` of listed time: the holes between datasets take no time and
        the result never passes the end of the data."""
        remaining = max(int(elapsed_ms), 0)
        position = int(from_ms)
        for start, end in self.listed_spans():
            if end <= position:
                continue
            position = max(position, start)
            if position + remaining <= end:
                return position + remaining
            remaining -= end - position
            position = end
        return min(position, self.last_ms)

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


CacheSource = Callable[[], BaseCache]


class SteppedReplayClock:
    """A clock that moves only when told; unset, it stands at ``default_ms`` (the end of the data)."""

    kind = "stepped"

    def __init__(self, *, cache: CacheSource, key: str, default_ms: int):
        self._cache = cache
        self.key = key
        self.default_ms = default_ms

    def now_ms(self) -> int:
        value = self._cache().get(self.key)
        return int(value) if value is not None else self.default_ms

    def set_ms(self, ts: int) -> int:
        self._cache().set(self.key, int(ts), timeout=None)
        return int(ts)

    def reset(self) -> None:
        self._cache().delete(self.key)


class RunningReplayClock:
    """A clock advancing with the wall clock at ``speed`` replay seconds per second, over the listed timeline.

    The anchor ``{"replay_ms", "wall", "speed"}`` is stored once per key (``cache.add``: the first process to read the
    clock fixes it, the others read the same anchor), so every process computes the same time from its own wall
    clock. ``set_ms`` re-anchors it (an operator restarting the replay); ``reset`` forgets it.
    """

    kind = "running"

    def __init__(
        self,
        *,
        cache: CacheSource,
        key: str,
        dataset: ReplayDataset,
        speed: float,
        start_ms: int,
        wall_clock: Callable[[], float] = time.time,
    ):
        if speed <= 0:
            raise ValueError("a running replay clock needs a positive speed")
        self._cache = cache
        self.key = key
        self.dataset = dataset
        self.speed = float(speed)
        self.start_ms = int(start_ms)
        self.wall_clock = wall_clock

    def anchor(self) -> dict:
        cache = self._cache()
        anchor = cache.get(self.key)
        if anchor is None:
            cache.add(
                self.key, {"replay_ms": self.start_ms, "wall": self.wall_clock(), "speed": self.speed}, timeout=None
            )
            anchor = cache.get(self.key)
        return anchor

    def now_ms(self) -> int:
        anchor = self.anchor()
        elapsed_ms = (self.wall_clock() - float(anchor["wall"])) * 1000 * float(anchor["speed"])
        return self.dataset.advance_listed(int(anchor["replay_ms"]), int(elapsed_ms))

    def set_ms(self, ts: int) -> int:
        self._cache().set(
            self.key, {"replay_ms": int(ts), "wall": self.wall_clock(), "speed": self.speed}, timeout=None
        )
        return int(ts)

    def reset(self) -> None:
        self._cache().delete(self.key)


def replay_start_ms(dataset: ReplayDataset, *, warmup_ms: int, start: datetime | None = None) -> int:
    """``start`` (floored to the 15m grid) or the first moment a market has ``warmup_ms`` of candles behind it."""
    if start is not None:
        ts = datetime_to_ms(start)
        return ts - ts % SIGNAL_TIMEFRAME_MS
    first = dataset.first_ms + warmup_ms
    return first + (-first) % SIGNAL_TIMEFRAME_MS


class ReplayMarketData(MarketData):
    name = "replay"

    def __init__(
        self,
        dataset: ReplayDataset | None = None,
        *,
        cache: BaseCache | None = None,
        prices: PriceCache | None = None,
        clock_key: str = CLOCK_CACHE_KEY,
        clock: SteppedReplayClock | RunningReplayClock | None = None,
    ):
        self.dataset = dataset if dataset is not None else load_dataset(str(settings.REPLAY_DATA_DIR))
        self._cache = cache
        self.prices = prices if prices is not None else price_cache()
        self.clock = (
            clock
            if clock is not None
            else SteppedReplayClock(cache=lambda: self.cache, key=clock_key, default_ms=self.dataset.last_ms)
        )

    @property
    def clock_key(self) -> str:
        return self.clock.key

    @classmethod
    def from_settings(cls) -> ReplayMarketData:
        """The process's replay: a running clock when ``REPLAY_SPEED`` > 0, else the shared stepped clock."""
        market_data = cls()
        if settings.REPLAY_SPEED > 0:
            start = datetime.fromisoformat(settings.REPLAY_START) if settings.REPLAY_START else None
            if start is not None and start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            warmup_ms = bars_needed(StrategyParams()) * SIGNAL_TIMEFRAME_MS
            market_data.clock = RunningReplayClock(
                cache=lambda: market_data.cache,
                key=RUNNING_CLOCK_CACHE_KEY,
                dataset=market_data.dataset,
                speed=settings.REPLAY_SPEED,
                start_ms=replay_start_ms(market_data.dataset, warmup_ms=warmup_ms, start=start),
            )
        return market_data

    def with_own_clock(self) -> ReplayMarketData:
        """The same data on a private stepped clock (its own cache key): moving it never touches the clock that the
        workers, the PnL windows and the backtests read. ``reset_clock()`` forgets it."""
        return ReplayMarketData(
            self.dataset, cache=self._cache, prices=self.prices, clock_key=f"{CLOCK_CACHE_KEY}:run:{uuid.uuid4().hex}"
        )

    def history(self) -> ReplayMarketData:
        """This data on a clock standing at the end of the data (a fresh private clock, never set)."""
        return self.with_own_clock()

    @property
    def cache(self) -> BaseCache:
        return self._cache if self._cache is not None else caches["default"]

    # -- clock -----------------------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return self.clock.now_ms()

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    def advance_to(self, moment: datetime | int) -> int:
        """Set this clock (a datetime or ms). Going back is allowed (a new replay on a private clock); returns ms."""
        ts = moment if isinstance(moment, int) else datetime_to_ms(moment)
        return self.clock.set_ms(ts)

    def step(self, milliseconds: int = 900_000) -> int:
        """Advance by ``milliseconds``; a step landing where no market is listed jumps to the next listing."""
        target = self.now_ms() + milliseconds
        if not self.dataset.listed_at(target):
            following = self.dataset.next_listed_ms(target)
            if following is not None:
                target = following + (-following) % milliseconds  # keep to the step grid
        return self.advance_to(target)

    def reset_clock(self) -> None:
        self.clock.reset()

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
