"""Metrics and plots on hand-computed trade tables and equity curves."""

import math

import numpy as np
import pandas as pd
import pytest

from engine.errors import InsufficientData
from engine.metrics import compute_metrics, max_drawdown, per_month_table, per_symbol_table
from engine.plots import equity_drawdown_png

DAY = 86_400_000
JAN = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def trades_frame():
    return pd.DataFrame(
        {
            "symbol": ["BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"],
            "entry_ts": [JAN, JAN + DAY, JAN + 31 * DAY, JAN + 32 * DAY],
            "exit_ts": [JAN + 3_600_000, JAN + DAY + 7_200_000, JAN + 31 * DAY + 3_600_000, JAN + 33 * DAY],
            "gross_pnl": [110.0, -40.0, 60.0, -10.0],
            "fees": [8.0, 8.0, 5.0, 4.0],
            "funding": [2.0, 2.0, 5.0, -4.0],
            "net_pnl": [100.0, -50.0, 50.0, -10.0],
            "r_multiple": [2.0, -1.0, 1.0, -0.2],
        }
    )


def test_trade_statistics():
    t = trades_frame()
    eq_ts = np.array([JAN, JAN + DAY, JAN + 2 * DAY, JAN + 40 * DAY])
    eq = np.array([1100.0, 1050.0, 1100.0, 1090.0])
    m = compute_metrics(t, eq_ts, eq, initial_balance=1000.0, exposure=0.25)
    assert m["trades"] == 4 and m["wins"] == 2 and m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(150 / 60)
    assert m["expectancy"] == pytest.approx(22.5)
    assert m["avg_r"] == pytest.approx(0.45)
    assert m["net_pnl"] == 90.0 and m["gross_pnl"] == 120.0 and m["fees"] == 25.0 and m["funding"] == 5.0
    assert m["best_trade"] == 100.0 and m["worst_trade"] == -50.0
    assert m["max_drawdown"] == 50.0 and m["max_drawdown_pct"] == pytest.approx(50 / 1100 * 100)
    assert m["exposure_pct"] == 25.0
    assert m["avg_holding_hours"] == pytest.approx((1 + 2 + 1 + 24) / 4)
    assert m["return_pct"] == pytest.approx(9.0)
    # daily returns: 1000->1100->1050->1100->1090 ; sharpe uses their mean/std * sqrt(365)
    r = np.diff([1000.0, 1100.0, 1050.0, 1100.0, 1090.0]) / np.array([1000.0, 1100.0, 1050.0, 1100.0])
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(365))
    assert m["calmar"] == pytest.approx(m["cagr_pct"] / m["max_drawdown_pct"])


def test_no_trades_and_no_losses():
    empty = trades_frame().iloc[0:0]
    m = compute_metrics(empty, np.array([JAN]), np.array([1000.0]), initial_balance=1000.0)
    assert m["trades"] == 0 and m["win_rate"] is None and m["profit_factor"] is None and m["max_drawdown"] == 0
    winners = trades_frame().iloc[[0, 2]]
    assert (
        compute_metrics(winners, np.array([JAN]), np.array([1150.0]), initial_balance=1000.0)["profit_factor"]
        == math.inf
    )


def test_max_drawdown_abs_and_pct():
    assert max_drawdown(np.array([100.0, 120.0, 90.0, 130.0, 117.0])) == (30.0, pytest.approx(25.0))


def test_per_symbol_and_per_month_tables():
    t = trades_frame()
    sym = per_symbol_table(t)
    assert sym.loc["BTC/USDT:USDT", "trades"] == 2 and sym.loc["BTC/USDT:USDT", "net_pnl"] == 150.0
    assert sym.loc["ETH/USDT:USDT", "win_rate"] == 0.0
    month = per_month_table(t)
    assert list(month.index) == ["2024-01", "2024-02"]
    assert month.loc["2024-01", "net_pnl"] == 50.0 and month.loc["2024-02", "trades"] == 2


def test_equity_png():
    png = equity_drawdown_png(
        np.array([JAN, JAN + DAY, JAN + 2 * DAY]),
        np.array([1000.0, 900.0, 1200.0]),
        title="test",
        initial_balance=1000.0,
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(InsufficientData):
        equity_drawdown_png(np.array([], dtype=np.int64), np.array([]))
