"""Live market data over ``ccxt.async_support``, against recorded real exchange responses (no network).

The async kucoinfutures client is real (ccxt 4.5.90's own request building and parsing run); only its HTTP layer
(``fetch``) is replaced by a router that answers with the recorded ``httpResponse`` payloads of
``fixtures/market_data/kucoinfutures_response.json`` (see the README there). The market structure is the real
BTC/USDT:USDT linear swap recorded from bitunix (``bitunix_fetch_markets_response.json``) under kucoin's market id.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import ccxt
import ccxt.async_support as ccxt_async
import numpy as np
import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from signals.market_data import FinalMarketDataError, RetryableMarketDataError, SymbolUnavailable
from signals.market_data import live as live_module
from signals.market_data.base import ms_to_datetime
from signals.market_data.live import CcxtMarketData, close_shared_clients, market_data_error, market_info_from_ccxt
from signals.market_data.price_cache import PriceCache

FIXTURES = Path(__file__).parent / "fixtures" / "market_data"
KUCOIN = json.loads((FIXTURES / "kucoinfutures_response.json").read_text())["methods"]
BITUNIX_MARKETS = json.loads((FIXTURES / "bitunix_fetch_markets_response.json").read_text())["methods"]["fetchMarkets"]
BTC = "BTC/USDT:USDT"
LAST_OPEN_MS = 1706637600000  # open time of the last recorded 1h candle
HOUR_MS = 3_600_000


def _btc_market(**changes) -> dict:
    market = {key: value for key, value in BITUNIX_MARKETS[0]["parsedResponse"][0].items() if key != "info"}
    market.update({"id": "XBTUSDTM", "baseId": "XBT", "info": {}})
    market.update(changes)
    return market


class RecordedExchange:
    """Stands in for the HTTP layer of an async ccxt client: recorded payloads by URL, or a scripted error."""

    ROUTES = (("kline/query", "fetchOHLCV"), ("/ticker", "fetchTicker"), ("funding-rate", "fetchFundingRate"))

    def __init__(self):
        self.urls: list[str] = []
        self.error: BaseException | None = None
        self.delay = 0.0
        self._lock = threading.Lock()

    def calls(self, fragment: str) -> int:
        return sum(fragment in url for url in self.urls)

    async def fetch(self, url, method="GET", headers=None, body=None):
        with self._lock:
            self.urls.append(url)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        for fragment, method_name in self.ROUTES:
            if fragment in url:
                return KUCOIN[method_name][0]["httpResponse"]
        raise AssertionError(f"unexpected request {url}")


def _kucoin_client(exchange: RecordedExchange, *, markets: list[dict] | None = None):
    client = ccxt_async.kucoinfutures({"enableRateLimit": True, "options": {"defaultType": "swap"}})
    client.fetch = exchange.fetch
    client.milliseconds = lambda: LAST_OPEN_MS + HOUR_MS  # ccxt's own clock, when it derives the request window
    client.set_markets(markets or [_btc_market()])
    return client


@pytest.fixture
def exchange():
    return RecordedExchange()


@pytest.fixture
def market_data(exchange, monkeypatch):
    prices = PriceCache(cache=LocMemCache(f"live-{uuid.uuid4()}", {}), prefix=f"p{uuid.uuid4().hex}")
    data = CcxtMarketData("kucoinfutures", client=_kucoin_client(exchange), prices=prices, call_timeout=5)
    monkeypatch.setattr(data, "now", lambda: ms_to_datetime(LAST_OPEN_MS + HOUR_MS))
    yield data
    close_shared_clients()


# -- parsing of recorded responses ---------------------------------------------------------------------------------
def test_ohlcv_returns_the_recorded_candles(market_data, exchange):
    candles = market_data.ohlcv(BTC, "1h", 3)
    expected = np.array(KUCOIN["fetchOHLCV"][0]["parsedResponse"], dtype=float)
    assert candles.ts.dtype == np.int64
    assert candles.ts.tolist() == expected[:, 0].astype(np.int64).tolist()
    for column, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        np.testing.assert_array_equal(getattr(candles, name), expected[:, column])
    assert "symbol=XBTUSDTM" in exchange.urls[0] and "granularity=60" in exchange.urls[0]


def test_ohlcv_drops_the_candle_still_forming(market_data, monkeypatch):
    monkeypatch.setattr(market_data, "now", lambda: ms_to_datetime(LAST_OPEN_MS + HOUR_MS - 1))
    candles = market_data.ohlcv(BTC, "1h", 3)
    assert candles.ts.tolist() == [1706630400000, 1706634000000]


def test_last_price_and_funding_rate_from_recorded_responses(market_data):
    assert market_data.last_price(BTC) == Decimal("73400")
    assert market_data.funding_rate(BTC) == Decimal("0.000136")


def test_markets_keeps_linear_usdt_perpetuals_with_their_precision(exchange):
    markets = [
        _btc_market(),
        _btc_market(id="ETHUSDTM", symbol="ETH/USDT:USDT", base="ETH", baseId="ETH", active=False),
        _btc_market(id="XBTUSDM", symbol="BTC/USD:BTC", quote="USD", settle="BTC", linear=False, inverse=True),
        _btc_market(id="XBT-SPOT", symbol="BTC/USDT", type="spot", spot=True, swap=False, contract=False, settle=None),
    ]
    data = CcxtMarketData("kucoinfutures", client=_kucoin_client(exchange, markets=markets))
    try:
        listed = data.markets()
    finally:
        close_shared_clients()
    assert [m.symbol for m in listed] == [BTC]
    info = listed[0]
    assert (info.kind, info.base, info.quote, info.settle) == ("swap", "BTC", "USDT", "USDT")
    assert info.tick_size == Decimal("0.1") and info.step_size == Decimal("0.0001")
    assert info.min_quantity == Decimal("0.0001") and info.min_notional is None
    assert info.contract_size == Decimal("1") and info.max_leverage == 125
    assert exchange.urls == []  # markets were already loaded: no request


def test_market_info_from_a_decimal_places_exchange():
    info = market_info_from_ccxt(
        _btc_market(precision={"amount": 3, "price": 1}, contractSize=0.01), precision_mode=ccxt.DECIMAL_PLACES
    )
    assert info.tick_size == Decimal("0.1") and info.step_size == Decimal("0.001")
    assert info.contract_size == Decimal("0.01")


# -- the 30 s price cache in front of the exchange -----------------------------------------------------------------
def test_second_price_request_inside_the_ttl_makes_no_exchange_call(market_data, exchange):
    assert market_data.last_price(BTC) == Decimal("73400")
    assert market_data.last_price(BTC) == Decimal("73400")
    assert exchange.calls("/ticker") == 1
    assert market_data.prices.stats().hits == 1 and market_data.prices.stats().misses == 1


@pytest.mark.redis
def test_second_price_request_inside_the_ttl_makes_no_exchange_call_with_redis(exchange, redis_url):
    prefix = f"p{uuid.uuid4().hex}"
    worker_a = CcxtMarketData(
        "kucoinfutures",
        client=_kucoin_client(exchange),
        prices=PriceCache(cache=RedisCache(redis_url, {}), prefix=prefix),
    )
    worker_b_prices = PriceCache(cache=RedisCache(redis_url, {}), prefix=prefix)  # another worker process
    try:
        assert worker_a.last_price(BTC) == Decimal("73400")
        assert worker_b_prices.get_or_fetch(f"kucoinfutures:{BTC}", lambda: pytest.fail("fetched again")) == Decimal(
            "73400"
        )
        assert worker_a.last_price(BTC) == Decimal("73400")
        assert exchange.calls("/ticker") == 1
        assert worker_b_prices.stats().hits == 2
    finally:
        worker_b_prices.cache.delete_many(
            [f"{prefix}:v:kucoinfutures:{BTC}", f"{prefix}:stats:hits", f"{prefix}:stats:misses"]
        )
        close_shared_clients()


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ccxt.RequestTimeout("timed out"), RetryableMarketDataError),
        (ccxt.RateLimitExceeded("429 too many requests"), RetryableMarketDataError),
        (ccxt.DDoSProtection("cloudflare"), RetryableMarketDataError),
        (ccxt.OnMaintenance("system maintenance"), RetryableMarketDataError),
        (ccxt.ExchangeNotAvailable("502"), RetryableMarketDataError),
        (ccxt.NetworkError("connection reset"), RetryableMarketDataError),
        (ccxt.BadSymbol("contract does not exist"), SymbolUnavailable),
        (ccxt.AuthenticationError("bad key"), FinalMarketDataError),
        (ccxt.PermissionDenied("forbidden"), FinalMarketDataError),
        (ccxt.BadRequest("invalid parameter"), FinalMarketDataError),
        (ccxt.NotSupported("no such endpoint"), FinalMarketDataError),
        (ccxt.ExchangeError("unknown"), FinalMarketDataError),
    ],
)
def test_exchange_errors_are_mapped_to_retryable_or_final(market_data, exchange, error, expected):
    exchange.error = error
    with pytest.raises(expected) as raised:
        market_data.ohlcv(BTC, "15m", 10)
    assert type(raised.value) is expected
    assert "kucoinfutures fetch_ohlcv(BTC/USDT:USDT, 15m)" in str(raised.value)
    assert isinstance(raised.value.__cause__, type(error))


def test_symbol_unknown_to_the_exchange_is_unavailable(market_data, exchange):
    with pytest.raises(SymbolUnavailable):
        market_data.ohlcv("DOGE/USDT:USDT", "15m", 10)
    assert exchange.urls == []


def test_a_call_that_hangs_is_a_retryable_timeout(market_data, exchange):
    exchange.delay = 2.0
    market_data.call_timeout = 0.1
    started = time.monotonic()
    with pytest.raises(RetryableMarketDataError):
        market_data.funding_rate(BTC)
    assert time.monotonic() - started < 1.5


def test_error_messages_never_carry_credentials():
    mapped = market_data_error(ccxt.AuthenticationError("x" * 1000), context="okx fetch_balance")
    assert isinstance(mapped, FinalMarketDataError) and len(str(mapped)) < 400


# -- one shared client per exchange, closed on shutdown ------------------------------------------------------------
class ClosingSpy:
    def __init__(self, client):
        self.client = client
        self.closed = 0

    async def close(self):
        self.closed += 1
        await self.client.close()


def test_one_shared_client_per_exchange_closed_on_shutdown(exchange):
    first = CcxtMarketData("kucoinfutures", client=_kucoin_client(exchange))
    second = CcxtMarketData("kucoinfutures")
    assert second.client is first.client
    assert live_module._pool.client_count == 1
    first.ohlcv(BTC, "1h", 3)
    loop_thread = live_module._pool._thread
    spy = ClosingSpy(first.client)
    live_module._pool.adopt("kucoinfutures", spy)
    close_shared_clients()
    assert spy.closed == 1
    assert live_module._pool.client_count == 0
    assert not loop_thread.is_alive()


def test_celery_worker_shutdown_closes_the_shared_clients(exchange):
    from celery import signals as celery_signals

    data = CcxtMarketData("kucoinfutures", client=_kucoin_client(exchange))
    data.funding_rate(BTC)
    spy = ClosingSpy(data.client)
    live_module._pool.adopt("kucoinfutures", spy)
    celery_signals.worker_process_shutdown.send(sender=None, pid=0, exitcode=0)
    assert spy.closed == 1
    assert live_module._pool.client_count == 0


def test_new_clients_have_ccxt_rate_limiting_on():
    client = live_module._new_client("okx")
    try:
        assert client.enableRateLimit is True
        assert client.options["defaultType"] == "swap"
    finally:
        asyncio.run(client.close())
    with pytest.raises(FinalMarketDataError):
        live_module._new_client("no-such-exchange")


def test_market_listing_is_reloaded_once_it_is_an_hour_old(exchange, monkeypatch):
    data = CcxtMarketData("kucoinfutures", client=_kucoin_client(exchange))
    reloads = []
    original = data.client.load_markets

    async def load_markets(reload=False, params={}):  # noqa: B006 - ccxt's signature
        reloads.append(reload)
        return await original(False, params)  # the recorded markets stand in for a fresh listing

    monkeypatch.setattr(data.client, "load_markets", load_markets)
    try:
        data.markets()
        data._markets_loaded_at -= live_module.MARKETS_MAX_AGE_SECONDS + 1
        data.markets()
        data.markets()
    finally:
        close_shared_clients()
    assert reloads == [False, True, False]


def test_market_data_keeps_working_after_the_clients_were_closed(exchange):
    data = CcxtMarketData("kucoinfutures", client=_kucoin_client(exchange))
    closed_client = data.client
    close_shared_clients()
    live_module._pool.adopt("kucoinfutures", _kucoin_client(exchange))  # what _new_client would build, offline
    assert data.client is not closed_client
    assert data.funding_rate(BTC) == Decimal("0.000136")
    close_shared_clients()
