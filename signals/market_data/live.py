"""Live market data over ``ccxt.async_support``.

One async ccxt client per exchange per process, created lazily on one event loop that runs in a daemon thread of
that process (``_ClientPool``); the synchronous facade submits coroutines to it, so Celery tasks, management
commands and Django views can call ``ohlcv()`` etc. without owning an event loop. Rate limiting is ccxt's own
(``enableRateLimit``); since the client is shared, the limiter sees every request of the process. The clients are
closed on interpreter exit and on Celery worker-process shutdown (``close_shared_clients``).

The clients come from ``exchanges.ccxt_factory`` and their errors go through ``exchanges.errors.map_ccxt_error``
(the one ccxt error map), then onto this port's errors (``market_data_error``): retryable stays retryable, an
unknown/delisted symbol is ``SymbolUnavailable``, the rest is final.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings

from engine.candles import Candles, timeframe_to_ms
from exchanges import errors as exchange_errors
from exchanges.ccxt_factory import TICK_SIZE, ccxt_client_create, precision_increment
from signals.market_data.base import MarketData, MarketInfo, datetime_to_ms
from signals.market_data.errors import (
    FinalMarketDataError,
    MarketDataError,
    RetryableMarketDataError,
    SymbolUnavailable,
)
from signals.market_data.price_cache import PriceCache, price_cache

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CALL_TIMEOUT_SECONDS = 30.0
MARKETS_MAX_AGE_SECONDS = 3600  # the listing is reloaded at most hourly, so delistings reach symbol_sync_markets


def market_data_error(error: BaseException, *, context: str = "") -> MarketDataError:
    """This port's exception for a ccxt (or timeout) exception, through the one ccxt error map; the message names
    the exchange call, never credentials."""
    mapped = exchange_errors.map_ccxt_error(error, context=context)
    text = str(mapped)
    if isinstance(mapped, exchange_errors.SymbolUnavailable):
        return SymbolUnavailable(text)
    if isinstance(mapped, exchange_errors.RetryableExchangeError):
        return RetryableMarketDataError(text)
    return FinalMarketDataError(text)


class _ClientPool:
    """The process's event loop thread and its ccxt clients (one per exchange id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="ccxt-market-data", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coroutine: Awaitable[T], *, timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def client(self, exchange_id: str, factory: Callable[[str], Any]) -> Any:
        with self._lock:
            client = self._clients.get(exchange_id)
            if client is None:
                client = factory(exchange_id)
                self._clients[exchange_id] = client
            return client

    def adopt(self, exchange_id: str, client: Any) -> None:
        """Register an externally built client (tests) so shutdown closes it like the others."""
        with self._lock:
            self._clients[exchange_id] = client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        for client in clients:
            try:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=10)
            except Exception:  # closing must never raise at shutdown
                logger.warning("closing the %s market-data client failed", getattr(client, "id", "?"), exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()

    @property
    def client_count(self) -> int:
        return len(self._clients)


_pool = _ClientPool()
atexit.register(_pool.close)


def close_shared_clients() -> None:
    """Close every shared ccxt client of this process (hooked to worker shutdown and interpreter exit)."""
    _pool.close()


def _new_client(exchange_id: str) -> Any:
    try:
        return ccxt_client_create(exchange_id, market_type="swap")
    except exchange_errors.FinalExchangeError as error:
        raise FinalMarketDataError(str(error)) from None


def _decimal(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return Decimal(str(value))


def market_info_from_ccxt(market: dict[str, Any], *, precision_mode: int = TICK_SIZE) -> MarketInfo:
    """Our ``MarketInfo`` from a ccxt unified market structure."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    kind = "swap" if market.get("swap") else ("future" if market.get("future") else (market.get("type") or "spot"))
    max_leverage = (limits.get("leverage") or {}).get("max")
    return MarketInfo(
        symbol=market["symbol"],
        base=market.get("base") or "",
        quote=market.get("quote") or "",
        settle=market.get("settle"),
        kind=kind,
        tick_size=precision_increment(precision.get("price"), precision_mode),
        step_size=precision_increment(precision.get("amount"), precision_mode),
        min_quantity=_decimal((limits.get("amount") or {}).get("min")),
        min_notional=_decimal((limits.get("cost") or {}).get("min")),
        contract_size=_decimal(market.get("contractSize")) or Decimal(1),
        max_leverage=int(max_leverage) if max_leverage else None,
        active=market.get("active") is not False,
    )


class CcxtMarketData(MarketData):
    """Live USDT-margined perpetual market data from one exchange (``settings.MARKET_DATA_EXCHANGE``)."""

    def __init__(
        self,
        exchange_id: str | None = None,
        *,
        client: Any = None,
        prices: PriceCache | None = None,
        call_timeout: float = DEFAULT_CALL_TIMEOUT_SECONDS,
        settle: str = "USDT",
    ):
        self.exchange_id = exchange_id or settings.MARKET_DATA_EXCHANGE
        self.name = self.exchange_id
        if client is not None:
            _pool.adopt(self.exchange_id, client)
        self.prices = prices if prices is not None else price_cache()
        self.call_timeout = call_timeout
        self.settle = settle
        self._markets_loaded_at = time.monotonic()

    @property
    def client(self) -> Any:
        """The process's shared client for this exchange (a new one after ``close_shared_clients``)."""
        return _pool.client(self.exchange_id, _new_client)

    def _call(self, context: str, make: Callable[[], Awaitable[T]]) -> T:
        async def guarded() -> T:
            return await make()

        try:
            return _pool.run(guarded(), timeout=self.call_timeout)
        except MarketDataError:
            raise
        except exchange_errors.library_errors() as error:
            mapped = market_data_error(error, context=f"{self.exchange_id} {context}")
            logger.warning("market data: %s", mapped)
            raise mapped from error

    def now(self) -> datetime:
        return datetime.now(tz=UTC)

    def ohlcv(self, symbol: str, timeframe: str, limit: int) -> Candles:
        timeframe_ms = timeframe_to_ms(timeframe)
        # one extra row: exchanges return the still-forming candle last, and we drop it
        rows = self._call(
            f"fetch_ohlcv({symbol}, {timeframe})",
            lambda: self.client.fetch_ohlcv(symbol, timeframe, limit=limit + 1),
        )
        return Candles.from_ohlcv(rows).closed_at(datetime_to_ms(self.now()), timeframe_ms).tail(limit)

    def _fetch_last_price(self, symbol: str) -> Decimal:
        ticker = self._call(f"fetch_ticker({symbol})", lambda: self.client.fetch_ticker(symbol))
        price = ticker.get("last") if ticker.get("last") is not None else ticker.get("close")
        value = _decimal(price)
        if value is None or value <= 0:
            raise RetryableMarketDataError(f"{self.exchange_id} ticker for {symbol} carries no last price")
        return value

    def last_price(self, symbol: str) -> Decimal:
        return self.prices.get_or_fetch(f"{self.exchange_id}:{symbol}", lambda: self._fetch_last_price(symbol))

    def funding_rate(self, symbol: str) -> Decimal | None:
        if not self.client.has.get("fetchFundingRate"):
            return None
        funding = self._call(f"fetch_funding_rate({symbol})", lambda: self.client.fetch_funding_rate(symbol))
        return _decimal(funding.get("fundingRate"))

    def markets(self) -> list[MarketInfo]:
        reload = time.monotonic() - self._markets_loaded_at > MARKETS_MAX_AGE_SECONDS
        markets = self._call("load_markets", lambda: self.client.load_markets(reload))
        if reload:
            self._markets_loaded_at = time.monotonic()
        mode = getattr(self.client, "precisionMode", TICK_SIZE)
        return [
            market_info_from_ccxt(market, precision_mode=mode)
            for market in markets.values()
            if market.get("swap")
            and market.get("linear")
            and market.get("settle") == self.settle
            and market.get("active") is not False
        ]

    def close(self) -> None:
        close_shared_clients()
