"""The fast backtester equals the bar-by-bar reference simulator on real candles; bad input; sweep."""

import itertools
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.backtest import BacktestConfig, run_backtest, sweep
from engine.candles import Candles, resample
from engine.errors import InsufficientData, InvalidParameters, UnknownSymbol
from engine.exits import ExitRules
from engine.sizing import MarketLimits
from engine.strategy import StrategyParams
from engine.tests.reference_backtest import reference_backtest

# real candles: the copies in the repository (data/ for the replay series, engine/tests/fixtures/ for the two series
# with holes; both verbatim freqtrade test data, see their READMEs), else the shared folder (skip when neither has it)
SEARCH = (
    Path(__file__).resolve().parents[2] / "data" / "ohlcv",
    Path(__file__).resolve().parent / "fixtures" / "ohlcv",
    Path("/work/shared/data/ohlcv"),
)
XRP = "XRP/USDT:USDT"


def data_path(relative: str) -> Path:
    for folder in SEARCH:
        if (folder / relative).exists():
            return folder / relative
    pytest.skip(f"market data {relative} not available in {', '.join(map(str, SEARCH))}")


def load_15m(relative: str) -> Candles:
    return resample(Candles.from_frame(pd.read_feather(data_path(relative))), 15)


@pytest.fixture(scope="module")
def real_data():
    data = {XRP: (load_15m("futures/XRP_USDT_USDT-5m-futures.feather"), None)}
    for name in ("ETH_BTC", "LTC_BTC", "XLM_BTC", "ADA_BTC", "TRX_BTC"):  # ADA and TRX have holes
        data[name] = (load_15m(f"{name}-5m.feather"), None)
    return data


@pytest.fixture(scope="module")
def xrp_funding():
    df = pd.read_feather(data_path("futures/XRP_USDT_USDT-8h-funding_rate.feather"))
    ts = (df["date"].astype("int64") // 1_000_000).to_numpy()  # ns -> ms (jitter kept: the engine floors to 8h)
    return {XRP: (ts, df["open"].to_numpy())}


PARAMS = StrategyParams(adx_min=15.0, quorum=1)  # looser than the defaults: more trades on 20 days of data
SCENARIOS = {
    "defaults": BacktestConfig(),
    "trailing_atr_expiry": BacktestConfig(
        exit_rules=ExitRules(
            trailing_mode="atr", trailing_atr_mult=1.0, trailing_activation_r=0.5, expiry_seconds=6 * 3600
        ),
        funding_rate_8h=0.0003,
    ),
    "trailing_pct_no_be_balance": BacktestConfig(
        exit_rules=ExitRules(
            tp1_close_fraction=0.3,
            breakeven_after_tp1=False,
            trailing_mode="pct",
            trailing_pct=0.004,
            trailing_activation_r=0.0,
        ),
        sizing_mode="balance_pct",
        sizing_pct=20.0,
        leverage=5.0,
        slippage=0.0,
        targets_as_maker=False,
    ),
    "min_notional_ghosts": BacktestConfig(
        initial_balance=300.0,
        sizing_mode="balance_pct",
        sizing_pct=10.0,
        leverage=1.0,
        markets={XRP: MarketLimits(amount_step=None, min_notional=Decimal(50))},
    ),
}


def assert_same(fast, ref_trades, ref_ts, ref_equity):
    assert len(fast.trades) == len(ref_trades) > 0
    for t, r in zip(fast.trades, ref_trades, strict=True):
        assert (t.symbol, t.side, t.entry_ts, t.exit_ts) == (r["symbol"], r["side"], r["entry_ts"], r["exit_ts"])
        assert t.reasons == tuple(f[1] for f in r["fills"])
        assert [f.ts for f in t.fills] == [f[0] for f in r["fills"]]
        np.testing.assert_allclose([f.price for f in t.fills], [f[2] for f in r["fills"]], rtol=0, atol=1e-12)
        np.testing.assert_allclose([f.quantity for f in t.fills], [f[3] for f in r["fills"]], rtol=1e-12)
        assert t.entry_price == r["entry_price"] and t.quantity == pytest.approx(r["quantity"], rel=1e-12)
        for ours, theirs in (
            (t.gross_pnl, r["gross"]),
            (t.fees, r["fees"]),
            (t.funding, r["funding"]),
            (t.net_pnl, r["net"]),
        ):
            assert ours == pytest.approx(theirs, abs=1e-9)
    np.testing.assert_array_equal(fast.equity_ts, ref_ts)
    np.testing.assert_allclose(fast.equity, ref_equity, rtol=0, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fast_engine_equals_reference_on_real_candles(real_data, xrp_funding, scenario):
    config = SCENARIOS[scenario]
    fast = run_backtest(real_data, PARAMS, config, funding=xrp_funding)
    ref_trades, ref_ts, ref_equity = reference_backtest(real_data, PARAMS, config, funding=xrp_funding)
    assert_same(fast, ref_trades, ref_ts, ref_equity)
    # the equity identity: final equity = start + sum of net trade PnL (everything is closed at the end)
    assert fast.equity[-1] == pytest.approx(config.initial_balance + sum(t.net_pnl for t in fast.trades), abs=1e-7)
    if scenario == "min_notional_ghosts":
        assert fast.counters["below_minimum"] > 0


def test_reasons_cover_the_exit_rules(real_data):
    seen = set()
    for config in SCENARIOS.values():
        seen |= {r for t in run_backtest(real_data, PARAMS, config).trades for r in t.reasons}
    assert {"sl", "tp1", "tp2", "trailing", "expiry"} <= seen


def test_range_and_processes(real_data):
    pair = ("ETH_BTC", "LTC_BTC")
    c15 = real_data["ETH_BTC"][0]
    start, end = int(c15.ts[300]), int(c15.ts[-100])
    one = run_backtest(real_data, PARAMS, symbols=pair, start_ms=start, end_ms=end)
    two = run_backtest(real_data, PARAMS, symbols=pair, start_ms=start, end_ms=end, processes=2)
    assert [t.net_pnl for t in one.trades] == [t.net_pnl for t in two.trades]
    assert all(t.signal_ts >= start and t.exit_ts < end for t in one.trades)
    ref_trades, ref_ts, ref_equity = reference_backtest(
        {s: real_data[s] for s in pair}, PARAMS, BacktestConfig(), start_ms=start, end_ms=end
    )
    assert_same(one, ref_trades, ref_ts, ref_equity)


def test_entries_on_next_open_only(real_data):
    result = run_backtest(real_data, PARAMS)
    for t in result.trades:
        assert t.entry_ts == t.signal_ts + 900_000 or t.symbol in ("ADA_BTC", "TRX_BTC")
        assert t.entry_ts > t.signal_ts
    # one position per symbol at a time
    for s in real_data:
        mine = [t for t in result.trades if t.symbol == s]
        assert all(a.exit_ts < b.entry_ts for a, b in itertools.pairwise(mine))


def test_results_api(real_data):
    result = run_backtest(real_data, PARAMS)
    m = result.metrics()
    assert m["trades"] == len(result.trades) and m["net_pnl"] == pytest.approx(sum(t.net_pnl for t in result.trades))
    assert set(result.per_symbol().index) <= set(real_data)
    assert result.per_month()["trades"].sum() == len(result.trades)
    assert result.equity_png().startswith(b"\x89PNG")
    assert 0 < m["exposure_pct"] < 100


def test_bad_input_clear_errors(real_data):
    with pytest.raises(UnknownSymbol, match="no candles for DOGE/USDT:USDT"):
        run_backtest(real_data, PARAMS, symbols=["DOGE/USDT:USDT"])
    c15 = real_data[XRP][0]
    with pytest.raises(InvalidParameters, match="empty range"):
        run_backtest(real_data, PARAMS, symbols=[XRP], start_ms=int(c15.ts[10]), end_ms=int(c15.ts[5]))
    with pytest.raises(InsufficientData, match="no 15m candles in the requested range"):
        run_backtest(real_data, PARAMS, symbols=[XRP], start_ms=int(c15.ts[-1]) + 10**9)
    with pytest.raises(InsufficientData, match="the strategy needs at least"):
        run_backtest({XRP: (c15.tail(20), None)}, PARAMS)
    with pytest.raises(InvalidParameters, match="ema"):
        run_backtest(real_data, StrategyParams(ema_fast=30, ema_slow=21))
    with pytest.raises(InvalidParameters, match=r"stop_atr_mult|negative|> 0"):
        run_backtest(real_data, StrategyParams(stop_atr_mult=-1.0))
    with pytest.raises(InvalidParameters, match="fee_taker"):
        run_backtest(real_data, PARAMS, BacktestConfig(fee_taker=0.5))
    with pytest.raises(InvalidParameters, match="trailing_mode"):
        run_backtest(real_data, PARAMS, BacktestConfig(exit_rules=ExitRules(trailing_mode="x")))


def test_sweep_ranks_by_metric_in_processes(real_data):
    data = {s: real_data[s] for s in (XRP, "ETH_BTC")}
    rows = sweep(
        data,
        {"stop_atr_mult": [1.0, 2.0], "ema_fast": [9, 30], "exit.trailing_mode": [None, "atr"]},
        "profit_factor",
        processes=2,
        params=PARAMS,
    )
    assert len(rows) == 8
    ok = [r for r in rows if r.error is None]
    bad = [r for r in rows if r.error is not None]
    assert len(bad) == 4 and all("ema" in r.error for r in bad) and rows[-4:] == bad
    values = [r.metrics["profit_factor"] for r in ok if r.metrics["profit_factor"] is not None]
    assert values == sorted(values, reverse=True)
    with pytest.raises(InvalidParameters, match="unknown metric"):
        sweep(data, {"stop_atr_mult": [1.0]}, "luck")
    with pytest.raises(InvalidParameters, match="unknown sweep parameter"):
        sweep(data, {"colour": [1]}, "net_pnl")


@pytest.mark.parametrize("processes", [1, 2])
def test_progress_callback(real_data, processes):
    calls = []
    run_backtest(real_data, PARAMS, processes=processes, progress=lambda done, total: calls.append((done, total)))
    n = len(real_data)
    assert calls == [(i, n) for i in range(1, n + 1)]


@pytest.mark.parametrize("symbol", [XRP, pytest.param("ETH_BTC", marks=pytest.mark.slow)])
def test_backtest_signals_are_the_live_scanners_signals(real_data, symbol):
    """Same strategy code: at every closed candle, the live path (``evaluate_latest``, what the scanner calls) emits
    a signal exactly where the backtester enters, with the same side and levels."""
    from engine.backtest import candidate_signals
    from engine.strategy import bars_needed, evaluate_latest

    c15 = real_data[symbol][0]
    c1h = resample(c15, 60, source_timeframe_ms=900_000)
    idx, sig = candidate_signals(c15, c1h, PARAMS, None)
    backtest = {int(c15.ts[i]): i for i in idx}
    live = {}
    for i in range(bars_needed(PARAMS) - 1, len(c15) - 1):  # the last candle has no next candle to enter on
        now_ms = int(c15.ts[i]) + 900_000
        candidate = evaluate_latest(c15, c1h, PARAMS, symbol=symbol, now_ms=now_ms)
        if candidate is not None:
            live[candidate.candle_ts] = candidate
    assert len(backtest) >= 3 and sorted(live) == sorted(backtest)
    for ts, candidate in live.items():
        i = backtest[ts]
        assert candidate.side == ("long" if sig.side[i] == 1 else "short")
        np.testing.assert_allclose(
            [candidate.entry, candidate.stop, candidate.tp1, candidate.tp2],
            [sig.entry[i], sig.stop[i], sig.tp1[i], sig.tp2[i]],
            rtol=1e-9,
        )


def test_sweep_rows_equal_single_runs(real_data):
    """The sweep computes each symbol's signals once per strategy parameters and reuses them for the combinations
    that differ only in exits, fees or sizing: every row must still equal a backtest run on its own."""
    from engine.backtest import _apply_combo

    data = {s: real_data[s] for s in (XRP, "ETH_BTC", "LTC_BTC")}
    grid = {"stop_atr_mult": [1.0, 2.0], "exit.breakeven_after_tp1": [True, False], "fee_taker": [0.0005, 0.001]}
    rows = sweep(data, grid, "net_pnl", processes=1, params=PARAMS)
    assert len(rows) == 8
    for row in rows:
        params, config = _apply_combo(PARAMS, BacktestConfig(), row.params)
        alone = run_backtest(data, params, config).metrics()
        assert (row.metrics["trades"], row.metrics["net_pnl"]) == (alone["trades"], alone["net_pnl"])
