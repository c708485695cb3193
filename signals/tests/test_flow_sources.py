"""Order-flow sources: recorded real ccxt responses through the real ccxt classes, failure isolation, replay proxy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import ccxt
import ccxt.async_support as ccxt_async
import numpy as np
import pytest
from django.core.cache.backends.locmem import LocMemCache

from engine.candles import Candles
from engine.flow import FlowParams, aggregate_pressure, candle_pressure
from signals.flow_sources import (
    REPLAY_EXCHANGE,
    CcxtSpotFlowSource,
    ReplayFlowSource,
    candle_proxy_trades,
    perpetual_symbol,
)
from signals.market_data.errors import SymbolUnavailable

FIXTURES = Path(__file__).parent / "fixtures" / "flow"
NOW_MS = 1_710_327_700_000


def recorded(exchange: str, method: str) -> dict:
    return json.loads((FIXTURES / f"{exchange}.json").read_text())["methods"][method][0]


def market(symbol: str, market_id: str, *, swap: bool = False, contract_size: float | None = None) -> dict:
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    return {
        "id": market_id, "symbol": symbol, "base": base, "quote": quote, "settle": quote if swap else None,
        "baseId": base, "quoteId": quote, "settleId": quote if swap else None, "type": "swap" if swap else "spot",
        "spot": not swap, "margin": False, "swap": swap, "future": False, "option": False, "contract": swap,
        "linear": True if swap else None, "inverse": False if swap else None, "active": True,
        "contractSize": contract_size, "precision": {"amount": 1e-8, "price": 0.1},
        "limits": {"amount": {"min": None, "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}, "leverage": {"min": None, "max": None}},
        "info": {},
    }  # fmt: skip


class RecordedExchange:
    """Builds real ccxt.async_support instances whose HTTP layer (``fetch``) answers from recorded responses."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self.closed: list[str] = []

    def build(self, exchange_id: str, markets: list[dict], routes: dict[str, object]):
        client = getattr(ccxt_async, exchange_id)({"enableRateLimit": False})
        client.set_markets(markets)

        async def fetch(url, method="GET", headers=None, body=None):
            self.calls.append((exchange_id, url))
            for fragment, answer in routes.items():
                if fragment in url:
                    if isinstance(answer, BaseException):
                        raise answer
                    if answer == "hang":
                        await asyncio.sleep(30)
                    return answer
            raise AssertionError(f"unexpected request {url}")

        original_close = client.close

        async def close():
            self.closed.append(exchange_id)
            await original_close()

        client.fetch = fetch
        client.close = close
        return client


def okx_client(recorder: RecordedExchange):
    return recorder.build(
        "okx",
        [market("BTC/USDT", "BTC-USDT")],
        {
            "/market/trades": recorded("okx", "fetchTrades")["httpResponse"],
            "/market/books": recorded("okx", "fetchOrderBook")["httpResponse"],
        },
    )


def mexc_client(recorder: RecordedExchange, **overrides):
    routes = {
        "/api/v3/aggTrades": recorded("mexc", "fetchTrades")["httpResponse"],
        "/api/v3/depth": recorded("mexc", "fetchOrderBook")["httpResponse"],
    }
    routes.update(overrides)
    return recorder.build("mexc", [market("BTC/USDT", "BTCUSDT")], routes)


def test_recorded_responses_parse_through_the_real_ccxt_classes():
    async def run():
        recorder = RecordedExchange()
        okx, mexc = okx_client(recorder), mexc_client(recorder)
        kucoin = recorder.build(
            "kucoinfutures",
            [market("BTC/USDT:USDT", "XBTUSDTM", swap=True, contract_size=0.001)],
            {"/api/v1/trade/history": recorded("kucoinfutures", "fetchTrades")["httpResponse"]},
        )
        try:
            okx_case, mexc_case = recorded("okx", "fetchTrades"), recorded("mexc", "fetchTrades")
            assert await okx.fetch_trades(*okx_case["input"]) == okx_case["parsedResponse"]
            book_case = recorded("okx", "fetchOrderBook")
            assert await okx.fetch_order_book(*book_case["input"]) == book_case["parsedResponse"]
            book_case = recorded("mexc", "fetchOrderBook")
            assert await mexc.fetch_order_book(*book_case["input"]) == book_case["parsedResponse"]
            parsed = await mexc.fetch_trades(*mexc_case["input"])
            # ccxt 4.5.90 drops the market id from mexc's synthetic trade id (see fixtures/flow/README.md)
            assert [{**t, "id": None} for t in parsed] == [{**t, "id": None} for t in mexc_case["parsedResponse"]]
            kucoin_case = recorded("kucoinfutures", "fetchTrades")
            assert await kucoin.fetch_trades(*kucoin_case["input"]) == kucoin_case["parsedResponse"]
        finally:
            await asyncio.gather(okx.close(), mexc.close(), kucoin.close())
        assert ("okx", "https://www.okx.com/api/v5/market/trades?instId=BTC-USDT&limit=1") in recorder.calls

    asyncio.run(run())


def test_source_turns_recorded_responses_into_trades_and_books():
    recorder = RecordedExchange()
    factories = {"okx": lambda: okx_client(recorder), "mexc": lambda: mexc_client(recorder)}
    source = CcxtSpotFlowSource(["okx", "mexc"], trades_limit=500, exchange_factory=lambda ex: factories[ex]())

    snapshot = source.fetch(symbols=["BTC/USDT"], now_ms=NOW_MS, lookback_ms=900_000)

    assert snapshot.failures == {}
    okx_trades = snapshot.trades[("okx", "BTC/USDT")]
    assert okx_trades.ts.tolist() == [1710327658374]
    assert okx_trades.price.tolist() == [73239.3] and okx_trades.amount.tolist() == [0.0009478]
    assert okx_trades.side.tolist() == [-1]  # the recorded print was a taker sell
    assert snapshot.trades[("mexc", "BTC/USDT")].side.tolist() == [1]  # "m": false -> buyer was the taker
    book = snapshot.books[("okx", "BTC/USDT")]
    assert book.bids.tolist() == [[67973.3, 0.05], [67973.2, 0.00725939]]
    assert book.asks.tolist() == [[67973.4, 1.40848059], [67975.9, 0.08292002]]
    assert snapshot.books[("mexc", "BTC/USDT")].bids.tolist() == [[45995.47, 10.337165]]
    assert snapshot.truncated == frozenset()  # one print each, far below the limit
    assert sorted(recorder.closed) == ["mexc", "okx"]
    # the request asks for the configured number of recent trades, without `since` (mexc refuses since w/o until)
    assert ("okx", "https://www.okx.com/api/v5/market/trades?instId=BTC-USDT&limit=500") in recorder.calls
    assert ("mexc", "https://api.mexc.com/api/v3/aggTrades?symbol=BTCUSDT&limit=500") in recorder.calls


def test_one_exchange_failing_or_hanging_does_not_stop_the_others():
    recorder = RecordedExchange()

    def broken_markets():
        client = recorder.build("kucoin", [], {"/api/v2/symbols": ccxt.ExchangeNotAvailable("kucoin down")})
        client.has["fetchCurrencies"] = False
        return client

    factories = {
        "okx": lambda: okx_client(recorder),
        # every call of this one times out on the network
        "mexc": lambda: mexc_client(recorder, **{"/api/v3/aggTrades": ccxt.RequestTimeout("mexc timed out")}),
        "kucoin": broken_markets,  # cannot even load its markets
        "bybit": lambda: recorder.build("bybit", [market("BTC/USDT", "BTCUSDT")], {"/v5/market": "hang"}),
        "nosuchexchange": lambda: (_ for _ in ()).throw(ValueError("ccxt has no exchange 'nosuchexchange'")),
    }
    source = CcxtSpotFlowSource(
        list(factories), timeout_seconds=0.5, exchange_factory=lambda exchange_id: factories[exchange_id]()
    )

    snapshot = source.fetch(symbols=["BTC/USDT"], now_ms=NOW_MS, lookback_ms=900_000)

    assert set(snapshot.trades) == {("okx", "BTC/USDT")}
    assert set(snapshot.books) == {("okx", "BTC/USDT"), ("mexc", "BTC/USDT")}  # mexc's book call still succeeded
    assert "RequestTimeout" in snapshot.failures["mexc BTC/USDT trades"]
    assert "ExchangeNotAvailable" in snapshot.failures["kucoin * markets"]
    assert "TimeoutError" in snapshot.failures["bybit BTC/USDT trades"]
    assert "TimeoutError" in snapshot.failures["bybit BTC/USDT book"]
    assert sorted(recorder.closed) == ["bybit", "kucoin", "mexc", "okx"]  # every client created was closed


def test_symbol_not_listed_on_an_exchange_is_skipped():
    recorder = RecordedExchange()
    source = CcxtSpotFlowSource(["okx"], exchange_factory=lambda _: okx_client(recorder))
    snapshot = source.fetch(symbols=["BTC/USDT", "DOGE/USDT"], now_ms=NOW_MS, lookback_ms=900_000)
    assert ("okx", "BTC/USDT") in snapshot.trades
    assert "not listed" in snapshot.failures["okx DOGE/USDT trades"]


def test_perpetual_symbol_maps_spot_to_the_usdt_perpetual():
    assert perpetual_symbol("BTC/USDT") == "BTC/USDT:USDT"
    assert perpetual_symbol("ETH/USDC") == "ETH/USDC:USDC"
    assert perpetual_symbol("XRP/USDT:USDT") == "XRP/USDT:USDT"
    with pytest.raises(ValueError):
        perpetual_symbol("BTCUSDT")


# -- replay proxy ------------------------------------------------------------------------------------------------------
def test_candle_proxy_trades_reproduce_the_candle_clv_per_window():
    ts = np.array([0, 300_000, 600_000], dtype=np.int64)
    open_ = np.array([10.0, 10.0, 10.0])
    high = np.array([12.0, 12.0, 11.0])
    low = np.array([8.0, 8.0, 11.0])
    close = np.array([11.0, 9.0, 11.0])  # CLV +0.5, -0.5, 0 (high == low)
    volume = np.array([100.0, 300.0, 50.0])
    trades = candle_proxy_trades(ts, open_, high, low, close, volume, timeframe_ms=300_000)

    assert len(trades.ts) == 3 * 5 * 2  # a buy and a sell print per minute
    expected = candle_pressure(open_, high, low, close)
    params = FlowParams(window_ms=300_000)
    for i, start in enumerate(ts):
        pressure = aggregate_pressure(
            {("replay", "X/USDT"): (trades, None)}, end_ms=int(start) + 300_000, params=params
        )
        assert pressure["X/USDT"].score == pytest.approx(expected[i])
        assert pressure["X/USDT"].notional == pytest.approx(volume[i] * close[i])


class FixedCandlesMarketData:
    def __init__(self, candles: dict[str, Candles]):
        self.candles = candles
        self.requests: list[tuple[str, str, int]] = []

    def ohlcv(self, symbol: str, timeframe: str, limit: int) -> Candles:
        self.requests.append((symbol, timeframe, limit))
        if symbol not in self.candles:
            raise SymbolUnavailable(symbol)
        return self.candles[symbol].tail(limit)


def test_replay_source_prefers_the_perpetual_and_records_missing_symbols():
    rows = [[i * 300_000, 1.0, 1.2, 0.8, 1.1, 10.0] for i in range(10)]
    market_data = FixedCandlesMarketData({"XRP/USDT:USDT": Candles.from_ohlcv(rows)})
    source = ReplayFlowSource(market_data)

    snapshot = source.fetch(symbols=["XRP/USDT", "BTC/USDT"], now_ms=10 * 300_000, lookback_ms=900_000)

    assert set(snapshot.trades) == {(REPLAY_EXCHANGE, "XRP/USDT")}
    assert market_data.requests[0] == ("XRP/USDT:USDT", "5m", 5)  # 15 min lookback -> 3 candles + 2 spare
    assert "BTC/USDT" in next(iter(snapshot.failures))
    assert snapshot.books == {}


def test_replay_proxy_produces_a_pressure_series_on_the_bundled_candles(settings):
    from signals.market_data.replay import ReplayMarketData, load_dataset

    market_data = ReplayMarketData(load_dataset(str(settings.REPLAY_DATA_DIR)), cache=LocMemCache("flow-replay", {}))
    dataset_candles = market_data.dataset.candles("XRP/USDT:USDT", "5m")
    now_ms = int(dataset_candles.ts[500])  # candle 500 is still open: 0..499 are closed
    market_data.advance_to(now_ms)
    source = ReplayFlowSource(market_data)

    snapshot = source.fetch(symbols=["XRP/USDT"], now_ms=now_ms, lookback_ms=24 * 300_000)

    trades = snapshot.trades[(REPLAY_EXCHANGE, "XRP/USDT")]
    assert trades.ts.max() < now_ms  # nothing from the open candle
    params = FlowParams(window_ms=300_000)
    series = np.array(
        [
            aggregate_pressure({("replay", "XRP/USDT"): (trades, None)}, end_ms=end, params=params)["XRP/USDT"].score
            for end in range(now_ms - 20 * 300_000, now_ms + 1, 300_000)
        ]
    )
    c = dataset_candles  # the window ending at ts[480 + k] holds candle 479 + k (no gaps in this file)
    expected = candle_pressure(c.open[479:500], c.high[479:500], c.low[479:500], c.close[479:500])
    assert series.shape == (21,)
    np.testing.assert_allclose(series, expected, atol=1e-12)
    assert np.all(np.abs(series) <= 1.0) and np.ptp(series) > 0.5  # a real, varying series
