"""Where spot order flow comes from: the ``SpotFlowSource`` port and its two implementations.

* ``CcxtSpotFlowSource`` — several spot exchanges through ``ccxt.async_support`` (clients from
  ``exchanges.ccxt_factory``): for every (exchange, symbol) the
  recent public trades (``fetch_trades``, taker side per trade) and the order book (``fetch_order_book``), all
  requested concurrently with ``asyncio.gather(..., return_exceptions=True)``. An exchange that fails, times out or
  does not list a symbol is logged and skipped; the others still count. Clients are closed after every fetch.
* ``ReplayFlowSource`` — the replay/demo, which has no trade tape: taker pressure is **estimated** from the bundled
  candles with ``engine.flow.candle_pressure`` (the close location value, the accumulation/distribution proxy).
  Each closed candle becomes synthetic buy and sell notionals ``quote volume · (1 ± clv) / 2`` spread evenly over its
  minutes, so the monitor's aggregation gives exactly the candle's CLV as pressure. It is a proxy, not order flow:
  use it to exercise the pipeline, not to judge the strategy.

* ``RecordedFlowSource`` — the replay with recorded tapes: per (exchange, spot symbol) trade lists in the shape ccxt's
  ``fetch_trades`` returns, bundled under ``data/flow/`` (``data/manifest.json`` → ``flow_tapes``), served at the
  replay clock as the live source serves the venues' last trades. Several venues, one-minute resolution: the
  monitor aggregates and compares the exchanges exactly as live. Where no tape covers the clock there is no flow.

Each returns a ``FlowSnapshot``: ``engine.flow.Trades`` / ``OrderBook`` keyed by (exchange, spot symbol), plus the
failures. ``flow_source_from_settings()`` is the one place the implementation is picked (``settings.FLOW_SOURCE``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from django.conf import settings

from engine.candles import timeframe_to_ms
from engine.flow import OrderBook, Trades, candle_pressure
from exchanges.ccxt_factory import ccxt_client_create
from exchanges.errors import library_errors, map_ccxt_error

logger = logging.getLogger(__name__)

Pair = tuple[str, str]  # (exchange id, spot symbol)

MINUTE_MS = 60_000
REPLAY_EXCHANGE = "replay"
MARKETS_TTL_SECONDS = 3600.0


@dataclass(frozen=True)
class FlowSnapshot:
    """One fetch of every (exchange, symbol): trades, books, what failed and which trade lists hit the fetch limit."""

    fetched_at_ms: int
    trades: dict[Pair, Trades] = field(default_factory=dict)
    books: dict[Pair, OrderBook] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # "exchange symbol kind" -> error text
    truncated: frozenset[Pair] = frozenset()  # the oldest minute of these trade lists may be cut by the limit


class SpotFlowSource(Protocol):
    """A source of spot order flow for a list of spot symbols (``BTC/USDT``)."""

    name: str
    resolution_ms: int  # the finest window the source can tell apart (shorter windows are not scored)

    def fetch(self, *, symbols: Sequence[str], now_ms: int, lookback_ms: int) -> FlowSnapshot:
        """Trades of (at least) the last ``lookback_ms`` where the venue serves that many, and current books."""
        ...


def perpetual_symbol(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC/USDT:USDT`` (the USDT-margined perpetual); an already-perpetual symbol is unchanged."""
    if ":" in symbol:
        return symbol
    quote = symbol.split("/", 1)[1] if "/" in symbol else ""
    if not quote:
        raise ValueError(f"not a ccxt unified symbol: {symbol!r}")
    return f"{symbol}:{quote}"


# -- live: ccxt ------------------------------------------------------------------------------------------------------
# Markets are public, large and change rarely: one copy per process and exchange, reused by each cycle's new clients.
_markets_lock = threading.Lock()
_markets_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def ccxt_spot_exchange(exchange_id: str, *, timeout_ms: int = 10_000):
    """A public (no keys) ``ccxt.async_support`` client for the spot markets of ``exchange_id``
    (``exchanges.ccxt_factory``; an unknown id raises ``exchanges.errors.FinalExchangeError``)."""
    return ccxt_client_create(exchange_id, market_type="spot", timeout_ms=timeout_ms)


class CcxtSpotFlowSource:
    name = "ccxt"
    resolution_ms = MINUTE_MS  # trades are folded into one-minute buckets

    def __init__(
        self,
        exchanges: Sequence[str],
        *,
        trades_limit: int = 1000,
        book_limit: int = 100,
        timeout_seconds: float = 10.0,
        exchange_factory: Callable[[str], Any] | None = None,
    ):
        if not exchanges:
            raise ValueError("CcxtSpotFlowSource needs at least one exchange")
        self.exchanges = tuple(exchanges)
        self.trades_limit = trades_limit
        self.book_limit = book_limit
        self.timeout_seconds = timeout_seconds
        self.exchange_factory = exchange_factory or (
            lambda exchange_id: ccxt_spot_exchange(exchange_id, timeout_ms=int(timeout_seconds * 1000))
        )

    def fetch(self, *, symbols: Sequence[str], now_ms: int, lookback_ms: int) -> FlowSnapshot:
        """Synchronous facade for Celery tasks (runs its own event loop)."""
        return asyncio.run(self.afetch(symbols=symbols, now_ms=now_ms, lookback_ms=lookback_ms))

    async def afetch(self, *, symbols: Sequence[str], now_ms: int, lookback_ms: int) -> FlowSnapshot:
        # The most recent ``trades_limit`` trades, without ``since``: some venues (mexc spot) refuse ``since`` without
        # ``until``, and the monitor keeps only the closed minutes it needs anyway.
        clients: dict[str, Any] = {}
        for exchange_id in self.exchanges:
            try:
                clients[exchange_id] = self.exchange_factory(exchange_id)
            except Exception as error:
                logger.warning("flow: cannot create a ccxt client for %s: %s", exchange_id, error)
        trades: dict[Pair, Trades] = {}
        books: dict[Pair, OrderBook] = {}
        failures: dict[str, str] = {}
        truncated: set[Pair] = set()
        try:
            results = await asyncio.gather(
                *(self._fetch_exchange(exchange_id, client, symbols) for exchange_id, client in clients.items()),
                return_exceptions=True,
            )
        finally:
            await asyncio.gather(*(self._close(exchange_id, c) for exchange_id, c in clients.items()))
        for exchange_id, result in zip(clients, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                failures[f"{exchange_id} * markets"] = _describe(result)
                logger.warning("flow: %s skipped: %s", exchange_id, _describe(result))
                continue
            for (symbol, kind), value in result.items():
                pair = (exchange_id, symbol)
                if isinstance(value, BaseException):
                    failures[f"{exchange_id} {symbol} {kind}"] = _describe(value)
                    logger.warning("flow: %s %s %s skipped: %s", exchange_id, symbol, kind, _describe(value))
                elif kind == "trades":
                    trades[pair] = Trades.from_ccxt(value)
                    if len(value) >= self.trades_limit:
                        truncated.add(pair)
                else:
                    books[pair] = OrderBook.from_ccxt(value)
        return FlowSnapshot(
            fetched_at_ms=now_ms, trades=trades, books=books, failures=failures, truncated=frozenset(truncated)
        )

    async def _fetch_exchange(self, exchange_id: str, client, symbols: Sequence[str]) -> dict[tuple[str, str], Any]:
        await self._ensure_markets(exchange_id, client)
        listed = [s for s in symbols if s in client.markets]
        results: dict[tuple[str, str], Any] = {}
        for symbol in symbols:
            if symbol not in client.markets:
                results[(symbol, "trades")] = LookupError(f"{symbol} is not listed on {exchange_id}")
        calls: list[tuple[tuple[str, str], Any]] = []
        for symbol in listed:
            calls.append(((symbol, "trades"), client.fetch_trades(symbol, None, self.trades_limit)))
            calls.append(((symbol, "book"), client.fetch_order_book(symbol, self.book_limit)))
        values = await asyncio.gather(
            *(asyncio.wait_for(call, timeout=self.timeout_seconds) for _, call in calls), return_exceptions=True
        )
        for (key, _), value in zip(calls, values, strict=True):
            if isinstance(value, asyncio.CancelledError):
                raise value
            results[key] = value
        return results

    async def _ensure_markets(self, exchange_id: str, client) -> None:
        if client.markets:
            return
        with _markets_lock:
            cached = _markets_cache.get(exchange_id)
        if cached is not None and time.monotonic() - cached[0] < MARKETS_TTL_SECONDS:
            client.set_markets(cached[1])
            return
        markets = await asyncio.wait_for(client.load_markets(), timeout=self.timeout_seconds * 3)
        with _markets_lock:
            _markets_cache[exchange_id] = (time.monotonic(), markets)

    @staticmethod
    async def _close(exchange_id: str, client) -> None:
        try:
            await client.close()
        except Exception as error:
            logger.warning("flow: closing the %s client failed: %s", exchange_id, error)


def _describe(error: BaseException) -> str:
    """A short text for the failure list; library errors go through the one ccxt error map first."""
    if isinstance(error, library_errors()):
        error = map_ccxt_error(error)
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text[:200]}"


# -- replay: candle proxy ----------------------------------------------------------------------------------------------
class ReplayFlowSource:
    """Order flow **estimated from candles** (replay/demo only; see the module docstring for the proxy)."""

    name = "replay"

    def __init__(self, market_data=None, *, timeframe: str = "5m"):
        self._market_data = market_data
        self.timeframe = timeframe

    @property
    def resolution_ms(self) -> int:
        """One candle: the proxy spreads a candle evenly over its minutes, so finer windows repeat the same value."""

        return timeframe_to_ms(self.timeframe)

    @property
    def market_data(self):
        if self._market_data is None:
            from signals.market_data import get_market_data

            self._market_data = get_market_data()
        return self._market_data

    def fetch(self, *, symbols: Sequence[str], now_ms: int, lookback_ms: int) -> FlowSnapshot:
        from signals.market_data import MarketDataError

        timeframe_ms = timeframe_to_ms(self.timeframe)
        limit = lookback_ms // timeframe_ms + 2
        trades: dict[Pair, Trades] = {}
        failures: dict[str, str] = {}
        for symbol in symbols:
            candles = None
            for market in (perpetual_symbol(symbol), symbol):
                try:
                    candles = self.market_data.ohlcv(market, self.timeframe, limit)
                    break
                except MarketDataError as error:
                    failures[f"{REPLAY_EXCHANGE} {symbol} candles"] = _describe(error)
            if candles is None:
                continue
            failures.pop(f"{REPLAY_EXCHANGE} {symbol} candles", None)
            candles = candles.closed_at(now_ms, timeframe_ms)
            trades[(REPLAY_EXCHANGE, symbol)] = candle_proxy_trades(
                candles.ts,
                candles.open,
                candles.high,
                candles.low,
                candles.close,
                candles.volume,
                timeframe_ms=timeframe_ms,
            )
        return FlowSnapshot(fetched_at_ms=now_ms, trades=trades, failures=failures)


def candle_proxy_trades(
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    timeframe_ms: int,
) -> Trades:
    """Synthetic per-minute buy/sell prints whose taker pressure over each candle equals its CLV (a proxy)."""
    clv = candle_pressure(open_, high, low, close)
    volume = np.nan_to_num(np.asarray(volume, dtype=np.float64), nan=0.0)
    minutes = max(1, timeframe_ms // MINUTE_MS)
    offsets = np.arange(minutes, dtype=np.int64) * MINUTE_MS
    minute_ts = (np.asarray(ts, dtype=np.int64)[:, None] + offsets[None, :]).ravel()
    buy = np.repeat(volume * (1 + clv) / 2 / minutes, minutes)
    sell = np.repeat(volume * (1 - clv) / 2 / minutes, minutes)
    price = np.repeat(np.asarray(close, dtype=np.float64), minutes)
    order = np.argsort(np.concatenate([minute_ts, minute_ts]), kind="stable")
    return Trades(
        ts=np.concatenate([minute_ts, minute_ts])[order],
        price=np.concatenate([price, price])[order],
        amount=np.concatenate([buy, sell])[order],
        side=np.concatenate([np.ones(len(buy), np.int8), -np.ones(len(sell), np.int8)])[order],
    )


# -- replay: recorded multi-venue tapes --------------------------------------------------------------------------------
class RecordedFlowSource:
    """Trades of several venues recorded as ccxt ``fetch_trades`` lists, released by the replay clock."""

    name = "recorded"
    resolution_ms = MINUTE_MS

    def __init__(self, tapes: dict[Pair, list[dict]]):
        self.tapes = {pair: sorted(rows, key=lambda t: t["timestamp"]) for pair, rows in tapes.items()}
        self._ts = {
            pair: np.asarray([t["timestamp"] for t in rows], dtype=np.int64) for pair, rows in self.tapes.items()
        }

    @classmethod
    def from_manifest(cls, directory) -> RecordedFlowSource:
        import json
        from pathlib import Path

        directory = Path(directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        tapes: dict[Pair, list[dict]] = {}
        for entry in manifest.get("flow_tapes", []):
            tapes[(entry["exchange"], entry["symbol"])] = json.loads((directory / entry["file"]).read_text())
        return cls(tapes)

    def covers(self, *, start_ms: int, end_ms: int) -> bool:
        """Whether any tape has a trade in [start, end] (the demo runs minute cycles only there)."""
        return any(ts.size and int(ts[0]) <= end_ms and int(ts[-1]) >= start_ms for ts in self._ts.values())

    def fetch(self, *, symbols: Sequence[str], now_ms: int, lookback_ms: int) -> FlowSnapshot:
        trades: dict[Pair, Trades] = {}
        wanted = set(symbols)
        for pair, rows in self.tapes.items():
            if pair[1] not in wanted:
                continue
            ts = self._ts[pair]
            first = int(np.searchsorted(ts, now_ms - lookback_ms, side="left"))
            last = int(np.searchsorted(ts, now_ms, side="right"))
            if last > first:
                trades[pair] = Trades.from_ccxt(rows[first:last])
        return FlowSnapshot(fetched_at_ms=now_ms, trades=trades)


def flow_source_from_settings() -> SpotFlowSource:
    """``settings.FLOW_SOURCE``: "live" → ``CcxtSpotFlowSource(settings.FLOW_EXCHANGES)``, "recorded" → the tapes
    bundled with the replay data, "replay" → the candle proxy."""
    if settings.FLOW_SOURCE == "live":
        return CcxtSpotFlowSource(
            settings.FLOW_EXCHANGES,
            trades_limit=settings.FLOW_TRADES_LIMIT,
            timeout_seconds=settings.FLOW_FETCH_TIMEOUT_SECONDS,
        )
    if settings.FLOW_SOURCE == "recorded":
        return recorded_flow_source(str(settings.REPLAY_DATA_DIR))
    if settings.FLOW_SOURCE == "replay":
        return ReplayFlowSource()
    raise ValueError(f"unknown FLOW_SOURCE {settings.FLOW_SOURCE!r} (expected 'live', 'recorded' or 'replay')")


@functools.lru_cache(maxsize=4)
def recorded_flow_source(directory: str) -> RecordedFlowSource:
    """Loaded once per process and data directory."""
    return RecordedFlowSource.from_manifest(directory)
