"""Order-flow pressure: score math on known streams, stability filter, cooldown, robustness."""

import numpy as np
import pytest

from engine.errors import InvalidParameters
from engine.flow import (
    FlowParams,
    OrderBook,
    StabilityFilter,
    SymbolPressure,
    Trades,
    aggregate_pressure,
    book_imbalance,
    candle_pressure,
)

MINUTE = 60_000


def trades(*rows):
    """rows of (ts, price, amount, side)"""
    ts, price, amount, side = zip(*rows, strict=True) if rows else ((), (), (), ())
    return Trades(np.array(ts, np.int64), np.array(price, float), np.array(amount, float), np.array(side, np.int8))


def test_taker_pressure_on_a_known_stream():
    # 300 quote bought, 100 sold inside the window; one old trade outside it
    stream = trades((10, 100.0, 2.0, 1), (20, 100.0, 1.0, 1), (30, 50.0, 2.0, -1), (-5, 100.0, 50.0, -1))
    pressure = aggregate_pressure({("okx", "BTC/USDT"): (stream, None)}, end_ms=MINUTE)[
        "BTC/USDT"
    ]  # no book: taker only
    assert pressure.score == pytest.approx((300 - 100) / 400)
    assert pressure.notional == pytest.approx(400)
    empty = aggregate_pressure({("okx", "BTC/USDT"): (trades(), None)}, end_ms=MINUTE)["BTC/USDT"]
    assert (empty.score, empty.notional) == (0.0, 0.0)


def test_book_imbalance_counts_only_levels_within_the_band():
    book = OrderBook(
        bids=np.array([[99.9, 3.0], [99.8, 1.0], [90.0, 100.0]]),  # the 90 level is outside 0.5 %
        asks=np.array([[100.1, 1.0], [100.2, 1.0]]),
    )
    bid = 99.9 * 3 + 99.8 * 1
    ask = 100.1 + 100.2
    assert book_imbalance(book, depth_pct=0.5) == pytest.approx((bid - ask) / (bid + ask))
    assert book_imbalance(OrderBook(np.empty((0, 2)), np.array([[1.0, 1.0]])), depth_pct=0.5) == 0.0


def test_aggregate_weights_exchanges_by_traded_volume():
    end = 10 * MINUTE
    big_buyers = trades((end - 1000, 10.0, 90.0, 1))  # 900 notional, all buys → +1
    small_sellers = trades((end - 1000, 10.0, 10.0, -1))  # 100 notional, all sells → −1
    result = aggregate_pressure(
        {("binance", "BTC/USDT"): (big_buyers, None), ("kraken", "BTC/USDT"): (small_sellers, None)},
        end_ms=end,
        params=FlowParams(window_ms=MINUTE),
    )["BTC/USDT"]
    assert result.score == pytest.approx((900 * 1 + 100 * -1) / 1000)
    assert result.agreeing == pytest.approx(0.5)
    assert result.exchanges == {"binance": 1.0, "kraken": -1.0}


def test_an_exchange_without_data_does_not_stop_the_others():
    end = MINUTE
    result = aggregate_pressure(
        {("a", "ETH/USDT"): (trades((10, 5.0, 1.0, 1)), None), ("b", "ETH/USDT"): (trades(), None)},
        end_ms=end,
        params=FlowParams(window_ms=MINUTE),
    )
    assert result["ETH/USDT"].score == 1.0 and result["ETH/USDT"].agreeing == 1.0


def test_a_window_without_any_trade_scores_zero_instead_of_failing():
    # trades exist, but none inside the window (a quiet minute, or every venue down for a while)
    old = trades((0, 10.0, 1.0, 1))
    book = OrderBook(bids=np.array([[99.9, 1.0]]), asks=np.array([[100.1, 1.0]]))
    result = aggregate_pressure(
        {("a", "BTC/USDT"): (old, None), ("b", "BTC/USDT"): (trades(), book)},
        end_ms=10 * MINUTE,
        params=FlowParams(window_ms=MINUTE),
    )["BTC/USDT"]
    assert (result.score, result.agreeing, result.notional) == (0.0, 0.0, 0.0)


def pressure(score, agreeing=1.0, symbol="BTC/USDT"):
    return SymbolPressure(symbol=symbol, score=score, agreeing=agreeing, exchanges={}, notional=1.0)


def test_stability_filter_needs_consecutive_extreme_windows():
    flt = StabilityFilter(FlowParams(window_ms=MINUTE, threshold=0.4, stable_windows=3, cooldown_ms=10 * MINUTE))
    assert flt.update(pressure(0.5), window_end_ms=1 * MINUTE) is None
    assert flt.update(pressure(0.6), window_end_ms=2 * MINUTE) is None
    alert = flt.update(pressure(0.7), window_end_ms=3 * MINUTE)
    assert alert is not None and alert.side == "long" and alert.score == 0.7


def test_stability_filter_suppresses_alternating_pressure():
    flt = StabilityFilter(FlowParams(window_ms=MINUTE, threshold=0.4, stable_windows=2))
    alerts = [flt.update(pressure(0.9 if i % 2 else -0.9), window_end_ms=(i + 1) * MINUTE) for i in range(20)]
    assert alerts == [None] * 20


def test_a_gap_or_weak_agreement_resets_the_streak():
    flt = StabilityFilter(FlowParams(window_ms=MINUTE, threshold=0.4, min_agreeing=0.6, stable_windows=2))
    assert flt.update(pressure(-0.9), window_end_ms=MINUTE) is None
    assert flt.update(pressure(-0.9), window_end_ms=5 * MINUTE) is None  # gap: not contiguous
    assert flt.update(pressure(-0.9, agreeing=0.5), window_end_ms=6 * MINUTE) is None  # most exchanges disagree
    assert flt.update(pressure(-0.9), window_end_ms=7 * MINUTE) is None
    assert flt.update(pressure(-0.9), window_end_ms=8 * MINUTE).side == "short"


def test_cooldown_per_symbol_and_replayed_windows_are_ignored():
    flt = StabilityFilter(FlowParams(window_ms=MINUTE, threshold=0.4, stable_windows=1, cooldown_ms=5 * MINUTE))
    assert flt.update(pressure(0.9), window_end_ms=MINUTE) is not None
    assert flt.update(pressure(0.9), window_end_ms=MINUTE) is None  # same window again
    assert all(flt.update(pressure(0.9), window_end_ms=m * MINUTE) is None for m in range(2, 6))
    assert flt.update(pressure(0.9, symbol="ETH/USDT"), window_end_ms=3 * MINUTE) is not None  # other symbol
    assert flt.update(pressure(0.9), window_end_ms=6 * MINUTE) is not None  # cooldown over


def test_candle_pressure_proxy():
    result = candle_pressure(np.array([1.0, 1, 1]), np.array([2.0, 2, 1]), np.array([0.0, 0, 1]), np.array([2.0, 0, 1]))
    assert result.tolist() == [1.0, -1.0, 0.0]


@pytest.mark.parametrize("bad", [{"window_ms": 0}, {"taker_weight": 2}, {"threshold": 0}, {"stable_windows": 0}])
def test_absurd_parameters_are_refused(bad):
    with pytest.raises(InvalidParameters):
        FlowParams(**bad).validate()


def test_trades_from_ccxt_shape():
    parsed = Trades.from_ccxt(
        [
            {"timestamp": 1, "price": 10.0, "amount": 2.0, "side": "buy"},
            {"timestamp": 2, "price": 10.0, "amount": 1.0, "side": "sell"},
            {"timestamp": 3, "price": 10.0, "amount": 1.0, "side": None},
        ]
    )
    assert parsed.side.tolist() == [1, -1] and parsed.ts.tolist() == [1, 2]
