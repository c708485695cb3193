"""The flow monitor cycle on synthetic trade streams with known answers: alerts, signals, cooldown, locking."""

from __future__ import annotations

import uuid
from decimal import Decimal

import numpy as np
import pytest
from django.core.cache.backends.locmem import LocMemCache

from engine.candles import Candles
from engine.flow import FlowParams, OrderBook, Trades
from signals.flow_monitor import (
    FlowMonitorParams,
    FlowStateStore,
    buckets_as_trades,
    flow_cycle,
    merge_buckets,
    minute_buckets,
)
from signals.flow_sources import FlowSnapshot
from signals.market_data.errors import SymbolUnavailable
from signals.models import Signal
from signals.tests.factories import SymbolFactory

T0 = 1_732_000_000_000 // 900_000 * 900_000  # a 15m boundary
MIN = 60_000
EXCHANGES = ("binance", "okx", "bybit")


def minute_prints(minute_ms: int, pressure: float, notional: float, price: float = 100.0) -> list[dict]:
    """One taker buy and one taker sell inside ``minute_ms`` whose net pressure is ``pressure``."""
    buy, sell = notional * (1 + pressure) / 2, notional * (1 - pressure) / 2
    prints = []
    if buy > 0:
        prints.append({"timestamp": minute_ms + 1_000, "price": price, "amount": buy / price, "side": "buy"})
    if sell > 0:
        prints.append({"timestamp": minute_ms + 31_000, "price": price, "amount": sell / price, "side": "sell"})
    return prints


class ScriptedFlowSource:
    """Serves, for each exchange, prints of the last few minutes with a pressure chosen per (exchange, minute)."""

    name = "scripted"

    def __init__(self, pressure, *, notional=None, failing=(), book=None):
        self.pressure = pressure  # (exchange, minute index since T0) -> pressure
        self.notional = notional or (lambda exchange: 1_000_000.0)
        self.failing = set(failing)
        self.book = book
        self.calls = 0

    def fetch(self, *, symbols, now_ms, lookback_ms):
        self.calls += 1
        trades, books, failures = {}, {}, {}
        for exchange in EXCHANGES:
            if exchange in self.failing:
                failures[f"{exchange} * markets"] = "RequestTimeout: down"
                continue
            for symbol in symbols:
                rows = []
                for minute in range(now_ms // MIN * MIN - 3 * MIN, now_ms + 1, MIN):
                    index = (minute - T0) // MIN
                    rows += [
                        r
                        for r in minute_prints(minute, self.pressure(exchange, index), self.notional(exchange))
                        if r["timestamp"] < now_ms
                    ]
                trades[(exchange, symbol)] = Trades.from_ccxt(rows)
                if self.book is not None:
                    books[(exchange, symbol)] = self.book
        return FlowSnapshot(fetched_at_ms=now_ms, trades=trades, books=books, failures=failures)


class FlatMarketData:
    """15m perpetual candles with a true range of exactly 2 (ATR 2) around 100; last price 100."""

    def __init__(self, *, missing=()):
        self.missing = set(missing)

    def ohlcv(self, symbol, timeframe, limit):
        if symbol in self.missing:
            raise SymbolUnavailable(symbol)
        assert timeframe == "15m"
        rows = [[T0 - (200 - i) * 900_000, 100.0, 101.0, 99.0, 100.0, 10.0] for i in range(200)]
        return Candles.from_ohlcv(rows).tail(limit)

    def last_price(self, symbol):
        return Decimal("100")

    def funding_rate(self, symbol):
        return None


def monitor_params(**overrides) -> FlowMonitorParams:
    values = {
        "symbols": ("BTC/USDT",),
        "windows": ("1m",),
        "flow": FlowParams(threshold=0.35, min_agreeing=0.6, stable_windows=3),
        "cooldown_ms": 30 * MIN,
    }
    values.update(overrides)
    return FlowMonitorParams(**values)


@pytest.fixture
def cache():
    return LocMemCache(f"flow-{uuid.uuid4().hex}", {})


@pytest.fixture
def btc_perp(db):
    return SymbolFactory(symbol="BTC/USDT:USDT", base="BTC", tick_size=Decimal("0.1"))


def run_cycles(source, params, cache, minutes, *, market_data=None, offset_s=5):
    market_data = market_data or FlatMarketData()
    return [
        flow_cycle(
            now_ms=T0 + m * MIN + offset_s * 1000, source=source, params=params, market_data=market_data, cache=cache
        )
        for m in minutes
    ]


# -- pure helpers ------------------------------------------------------------------------------------------------------
def test_minute_buckets_keep_closed_minutes_and_extrapolate_a_cut_first_minute():
    trades = Trades.from_ccxt(
        minute_prints(T0, 0.5, 1000) + minute_prints(T0 + MIN, -1.0, 400) + minute_prints(T0 + 2 * MIN, 1.0, 50)
    )
    buckets = minute_buckets(trades, before_ms=T0 + 2 * MIN)
    assert buckets == {T0: pytest.approx((750.0, 250.0)), T0 + MIN: pytest.approx((0.0, 400.0))}
    # the list starts 1 s into T0: 59 s of that minute were seen, scaled to 60 s; the pressure is unchanged
    cut = minute_buckets(trades, before_ms=T0 + 2 * MIN, extrapolate_first_minute=True)
    assert cut == {T0: pytest.approx((750.0 * 60 / 59, 250.0 * 60 / 59)), T0 + MIN: pytest.approx((0.0, 400.0))}
    # less than 5 s seen: the minute is left out
    late = Trades.from_ccxt([{"timestamp": T0 + 57_000, "price": 1.0, "amount": 5.0, "side": "buy"}])
    assert minute_buckets(late, before_ms=T0 + MIN, extrapolate_first_minute=True) == {}


def test_merge_keeps_the_more_complete_version_and_prunes_old_minutes():
    old = {T0 - 10 * MIN: (1.0, 1.0), T0: (100.0, 50.0), T0 + MIN: (10.0, 10.0)}
    new = {T0: (60.0, 40.0), T0 + MIN: (30.0, 0.0), T0 + 2 * MIN: (5.0, 5.0)}
    merged = merge_buckets(old, new, keep_from_ms=T0 - 5 * MIN)
    assert merged == {T0: (100.0, 50.0), T0 + MIN: (30.0, 0.0), T0 + 2 * MIN: (5.0, 5.0)}
    # an extrapolated minute fills a gap but never replaces an observed one
    estimated = merge_buckets(old, {T0 + MIN: (90.0, 0.0), T0 + 3 * MIN: (7.0, 1.0)}, keep_from_ms=T0,
                              estimated={T0 + MIN, T0 + 3 * MIN})  # fmt: skip
    assert estimated == {T0: (100.0, 50.0), T0 + MIN: (10.0, 10.0), T0 + 3 * MIN: (7.0, 1.0)}


def test_buckets_as_trades_round_trip_the_notional():
    buckets = {T0: (750.0, 250.0), T0 + MIN: (0.0, 400.0)}
    trades = buckets_as_trades(buckets, start_ms=T0, end_ms=T0 + 2 * MIN)
    assert minute_buckets(trades, before_ms=T0 + 2 * MIN) == buckets


# -- the cycle ---------------------------------------------------------------------------------------------------------
def test_stable_extreme_buying_on_most_exchanges_creates_one_flow_signal(btc_perp, cache):
    # binance and okx buy hard, bybit (a tenth of the volume) sells a little
    source = ScriptedFlowSource(
        lambda ex, m: -0.2 if ex == "bybit" else 0.8,
        notional=lambda ex: 100_000.0 if ex == "bybit" else 1_000_000.0,
    )
    results = run_cycles(source, monitor_params(), cache, range(1, 6))

    # score = (0.8 * 2e6 - 0.2 * 1e5) / 2.1e6 on every closed minute
    assert results[0].pressures["1m"]["BTC/USDT"].score == pytest.approx((1.6e6 - 0.2e5) / 2.1e6)
    assert results[0].pressures["1m"]["BTC/USDT"].agreeing == pytest.approx(2 / 3)
    assert [bool(r.alerts) for r in results] == [False, False, True, False, False]  # 3rd stable window, then cooldown
    window, alert = results[2].alerts[0]
    assert (window, alert.symbol, alert.side, alert.window_end_ms) == ("1m", "BTC/USDT", "long", T0 + 3 * MIN)

    signal = Signal.objects.get(pk=results[2].signal_ids[0])
    assert (signal.source, signal.symbol.symbol, signal.side, signal.timeframe) == (
        "flow",
        "BTC/USDT:USDT",
        "long",
        "1m",
    )
    # ATR(15m) = 2 exactly, stop 1.5 ATR, targets 1 R and 2 R (StrategyParams defaults)
    assert (signal.entry, signal.stop, signal.tp1, signal.tp2) == (
        Decimal("100"),
        Decimal("97"),
        Decimal("103"),
        Decimal("106"),
    )
    assert signal.atr == Decimal("2")
    assert signal.candle_ts == T0 + 2 * MIN
    assert signal.confirmations == ["flow:binance", "flow:okx"]
    # engine.risk: ATR 2 % (+1), no S/R (0), 2 confirmations (+1) -> 2 -> medium
    assert signal.risk_level == "medium"
    assert signal.indicators["flow_score"] == pytest.approx(round((1.6e6 - 0.2e5) / 2.1e6, 4))


def test_short_signal_levels_mirror_the_long_ones(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: -0.9)
    results = run_cycles(source, monitor_params(), cache, range(1, 4))
    signal = Signal.objects.get(pk=results[2].signal_ids[0])
    assert signal.side == "short"
    assert (signal.stop, signal.tp1, signal.tp2) == (Decimal("103"), Decimal("97"), Decimal("94"))
    assert signal.confirmations == ["flow:binance", "flow:bybit", "flow:okx"]


def test_alternating_pressure_never_alerts(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9 if m % 2 else -0.9)
    results = run_cycles(source, monitor_params(), cache, range(1, 12))
    assert all(abs(r.pressures["1m"]["BTC/USDT"].score) == pytest.approx(0.9) for r in results)
    assert not any(r.alerts for r in results)
    assert not Signal.objects.exists()


def test_extreme_on_too_few_exchanges_does_not_alert(btc_perp, cache):
    # one big venue pushes the score over the threshold, but only 1 of 3 exchanges agrees
    source = ScriptedFlowSource(
        lambda ex, m: 0.9 if ex == "binance" else -0.1, notional=lambda ex: 10_000_000.0 if ex == "binance" else 1e5
    )
    results = run_cycles(source, monitor_params(), cache, range(1, 8))
    assert results[-1].pressures["1m"]["BTC/USDT"].score > 0.35
    assert not any(r.alerts for r in results)


def test_cooldown_holds_across_cycles_through_the_cache_state(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9)
    params = monitor_params(cooldown_ms=10 * MIN)
    first = run_cycles(source, params, cache, range(1, 4))
    assert first[-1].alerts and len(first[-1].signal_ids) == 1

    # a later cycle (another worker: no in-process state, only the shared cache) stays quiet inside the cooldown
    quiet = run_cycles(source, params, cache, range(4, 13))
    assert not any(r.alerts for r in quiet)
    store = FlowStateStore(cache)
    assert store.last_signal_ms() == {"BTC/USDT": T0 + 3 * MIN}
    assert store.stability_filter("1m", FlowParams()).states["BTC/USDT"].streak == 12

    # once 10 minutes passed the symbol may alert again (the flow signal is still open: no second row)
    again = run_cycles(source, params, cache, [13])
    assert again[0].alerts and again[0].signal_ids == []
    assert Signal.objects.filter(source="flow").count() == 1


def test_cooldown_is_per_symbol_across_windows(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9)
    params = monitor_params(windows=("1m", "5m"), flow=FlowParams(stable_windows=1))
    results = run_cycles(source, params, cache, range(1, 16))
    alerts = [(w, a.window_end_ms) for r in results for w, a in r.alerts]
    # the 1m window alerts first; the 5m window's stable alert falls inside the symbol's cooldown
    assert alerts == [("1m", T0 + MIN)]
    assert set(results[-1].pressures) == {"1m", "5m"}
    assert results[-1].pressures["5m"]["BTC/USDT"].notional == pytest.approx(3 * 5 * 1_000_000.0)


def test_one_exchange_failing_does_not_stop_the_cycle(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9, failing={"bybit"})
    results = run_cycles(source, monitor_params(), cache, range(1, 4))
    assert results[0].failures == {"bybit * markets": "RequestTimeout: down"}
    pressure = results[0].pressures["1m"]["BTC/USDT"]
    assert set(pressure.exchanges) == {"binance", "okx"} and pressure.agreeing == 1.0
    assert len(results[2].signal_ids) == 1


def test_book_imbalance_enters_the_score(btc_perp, cache):
    book = OrderBook(bids=np.array([[99.9, 30.0]]), asks=np.array([[100.1, 10.0]]))  # imbalance ~ +0.5
    source = ScriptedFlowSource(lambda ex, m: 0.0, book=book)
    results = run_cycles(source, monitor_params(), cache, [1])
    imbalance = (99.9 * 30 - 100.1 * 10) / (99.9 * 30 + 100.1 * 10)
    assert results[0].pressures["1m"]["BTC/USDT"].score == pytest.approx(0.3 * imbalance)


def test_the_same_cycle_runs_once_and_cycles_never_overlap(cache):
    source = ScriptedFlowSource(lambda ex, m: 0.0)
    params = monitor_params()
    first = flow_cycle(now_ms=T0 + 5_000, source=source, params=params, market_data=FlatMarketData(), cache=cache)
    again = flow_cycle(now_ms=T0 + 9_000, source=source, params=params, market_data=FlatMarketData(), cache=cache)
    assert first.ran and not again.ran and source.calls == 1

    store = FlowStateStore(cache)
    token = store.claim_cycle(T0 + MIN + 1, lock_seconds=60)  # a cycle still running elsewhere
    assert token is not None
    blocked = flow_cycle(now_ms=T0 + 2 * MIN, source=source, params=params, market_data=FlatMarketData(), cache=cache)
    assert not blocked.ran
    store.release(token)
    assert flow_cycle(now_ms=T0 + 3 * MIN, source=source, params=params, market_data=FlatMarketData(), cache=cache).ran


def test_alert_without_perpetual_market_data_or_on_a_muted_symbol_creates_no_signal(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9)
    results = run_cycles(
        source, monitor_params(), cache, range(1, 4), market_data=FlatMarketData(missing={"BTC/USDT:USDT"})
    )
    assert results[-1].alerts and results[-1].signal_ids == []

    btc_perp.is_muted = True
    btc_perp.save()
    other = LocMemCache(f"flow-{uuid.uuid4().hex}", {})
    results = run_cycles(source, monitor_params(), other, range(1, 4))
    assert results[-1].alerts and results[-1].signal_ids == []
    assert not Signal.objects.exists()


@pytest.mark.redis
def test_state_is_shared_through_redis(btc_perp, redis_url):
    from django.core.cache.backends.redis import RedisCache

    prefix = f"test-flow-{uuid.uuid4().hex}"
    worker_a = RedisCache(redis_url, {"KEY_PREFIX": prefix})
    worker_b = RedisCache(redis_url, {"KEY_PREFIX": prefix})  # another process: a separate client, same server
    source = ScriptedFlowSource(lambda ex, m: 0.9)
    params = monitor_params()
    try:
        run_cycles(source, params, worker_a, [1, 2])
        third = run_cycles(source, params, worker_b, [3])[0]
        assert third.alerts and len(third.signal_ids) == 1  # worker b continued worker a's streak
        assert not flow_cycle(
            now_ms=T0 + 3 * MIN + 7_000, source=source, params=params, market_data=FlatMarketData(), cache=worker_a
        ).ran
        assert not any(r.alerts for r in run_cycles(source, params, worker_a, [4, 5]))  # cooldown seen by worker a
    finally:
        FlowStateStore(worker_a).clear(windows=params.windows)
        worker_a.delete_many([f"flow:cycle:0:{(T0 + m * MIN) // MIN}" for m in range(0, 8)])


def test_params_from_settings_and_validation(settings):
    settings.FLOW_SYMBOLS = ["BTC/USDT", "ETH/USDT"]
    settings.FLOW_WINDOWS = ["1m", "5m", "15m"]
    settings.FLOW_COOLDOWN_MINUTES = 45
    params = FlowMonitorParams.from_settings()
    assert params.symbols == ("BTC/USDT", "ETH/USDT")
    assert params.flow_params("15m").window_ms == 900_000
    assert params.flow_params("5m").cooldown_ms == 45 * MIN
    assert params.lookback_ms == 17 * MIN
    with pytest.raises(ValueError):
        monitor_params(windows=()).validate()


def test_windows_finer_than_the_source_resolution_are_not_scored(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9)
    source.resolution_ms = 5 * MIN  # e.g. the replay proxy of 5m candles
    params = monitor_params(windows=("1m", "5m"), flow=FlowParams(stable_windows=1))
    results = run_cycles(source, params, cache, range(1, 11))
    assert all(r.skipped_windows == ["1m"] and set(r.pressures) == {"5m"} for r in results)
    assert [(w, a.window_end_ms) for r in results for w, a in r.alerts] == [("5m", T0)]  # then the cooldown


class BusyVenueSource:
    """binance serves its last 100 trades: 20 s of the closed minute (buyers), okx and bybit whole minutes (sellers)."""

    name = "busy"

    def fetch(self, *, symbols, now_ms, lookback_ms):
        closed = now_ms // MIN * MIN - MIN
        busy = [
            {"timestamp": closed + 40_000 + i * 200, "price": 100.0, "amount": 50.0, "side": "buy"} for i in range(100)
        ]  # 500,000 of buying seen in the last 20 s of the minute -> 1,500,000 over the minute
        trades = {("binance", "BTC/USDT"): Trades.from_ccxt(busy)}
        for exchange in ("okx", "bybit"):  # quieter venues: their lists reach back past the lookback, nothing cut
            prints = [p for m in range(-5, 1) for p in minute_prints(closed + m * MIN, -1.0, 250_000)]
            trades[(exchange, "BTC/USDT")] = Trades.from_ccxt(prints)
        return FlowSnapshot(fetched_at_ms=now_ms, trades=trades)


def test_a_busy_venue_whose_trade_list_spans_less_than_a_minute_still_counts_with_its_estimated_volume(cache):
    now = T0 + 10 * MIN + 3_000
    result = flow_cycle(
        now_ms=now, source=BusyVenueSource(), params=monitor_params(), market_data=FlatMarketData(), cache=cache
    )
    pressure = result.pressures["1m"]["BTC/USDT"]
    assert pressure.exchanges == {"binance": 1.0, "okx": -1.0, "bybit": -1.0}
    assert pressure.notional == pytest.approx(1_500_000.0 + 2 * 250_000.0)
    assert pressure.score == pytest.approx((1_500_000.0 - 500_000.0) / 2_000_000.0)


def test_a_new_replay_from_an_earlier_time_starts_from_a_clean_slate(btc_perp, cache):
    source = ScriptedFlowSource(lambda ex, m: 0.9)
    params = monitor_params(cooldown_ms=60 * MIN)
    first = run_cycles(source, params, cache, range(1, 12))
    assert [bool(r.alerts) for r in first] == [False, False, True] + [False] * 8

    # the demo replays the same stretch again: same minutes, same cache, well inside the cooldown and the claims' TTL
    again = run_cycles(source, params, cache, range(1, 6))
    assert all(r.ran for r in again)
    assert [bool(r.alerts) for r in again] == [False, False, True, False, False]

    # a clock a little behind (another worker) is not a new replay: the minute stays claimed, the streak is kept
    late = flow_cycle(now_ms=T0 + 4 * MIN, source=source, params=params, market_data=FlatMarketData(), cache=cache)
    assert not late.ran
    assert FlowStateStore(cache).stability_filter("1m", FlowParams()).states["BTC/USDT"].streak == 5
