"""Backtest metrics from a trade table and an equity curve (pure pandas/NumPy).

Public API
----------
``compute_metrics(trades, equity_ts, equity, *, initial_balance, exposure=None) -> dict[str, float | int | None]``
    ``trades``: a DataFrame with at least ``symbol, entry_ts, exit_ts`` (ms), ``gross_pnl, fees, funding, net_pnl,
    r_multiple`` (``engine.backtest.BacktestResult.trades_frame()`` gives one). ``equity_ts`` (int64 ms) and
    ``equity`` (float) are the mark-to-market equity curve. Keys: trades, wins, losses, win_rate, profit_factor,
    expectancy, avg_r, net_pnl, gross_pnl, fees, funding, return_pct, max_drawdown, max_drawdown_pct, sharpe,
    sortino, calmar, cagr_pct, exposure_pct, avg_holding_hours, best_trade, worst_trade.
    Conventions: a win is net PnL > 0; profit factor = gross wins / |gross losses| of the NET trade results
    (``inf`` when there is no losing trade, ``None`` without trades); Sharpe and Sortino use DAILY returns of the
    equity (last value per UTC day) annualised with sqrt(365) (crypto trades every day), risk-free rate 0; Sortino's
    downside deviation is sqrt(mean(min(r, 0)^2)); Calmar = CAGR / max drawdown (both in %); holding time = exit
    candle open time - entry candle open time.
``per_symbol_table(trades) -> DataFrame`` — per symbol: trades, win_rate, net_pnl, avg_r, profit_factor.
``per_month_table(trades) -> DataFrame`` — per UTC month of the exit: trades, win_rate, net_pnl, avg_r.
``max_drawdown(equity) -> (abs, pct)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DAY_MS = 86_400_000


def max_drawdown(equity: np.ndarray) -> tuple[float, float]:
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(equity)
    dd = equity - peak
    dd_pct = np.divide(dd, peak, out=np.zeros_like(dd), where=peak > 0)
    return float(-dd.min()), float(-dd_pct.min() * 100.0)


def _profit_factor(pnl: np.ndarray) -> float | None:
    if pnl.size == 0:
        return None
    won = pnl[pnl > 0].sum()
    lost = -pnl[pnl < 0].sum()
    if lost == 0:
        return math.inf if won > 0 else None
    return float(won / lost)


def _daily_returns(equity_ts: np.ndarray, equity: np.ndarray, initial_balance: float) -> np.ndarray:
    if equity.size == 0:
        return np.empty(0)
    day = np.asarray(equity_ts, dtype=np.int64) // DAY_MS
    last_of_day = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    closes = np.r_[initial_balance, equity[last_of_day]]
    return np.diff(closes) / closes[:-1]


def compute_metrics(
    trades: pd.DataFrame,
    equity_ts: np.ndarray,
    equity: np.ndarray,
    *,
    initial_balance: float,
    exposure: float | None = None,
) -> dict[str, float | int | None]:
    net = trades["net_pnl"].to_numpy(dtype=np.float64) if len(trades) else np.empty(0)
    n = int(net.size)
    equity = np.asarray(equity, dtype=np.float64)
    final = float(equity[-1]) if equity.size else initial_balance
    dd_abs, dd_pct = max_drawdown(np.r_[initial_balance, equity])
    rets = _daily_returns(equity_ts, equity, initial_balance)
    sharpe = sortino = None
    if rets.size >= 2:
        sd = rets.std(ddof=1)
        sharpe = float(rets.mean() / sd * math.sqrt(365)) if sd > 0 else None
        downside = math.sqrt(float(np.mean(np.minimum(rets, 0.0) ** 2)))
        sortino = float(rets.mean() / downside * math.sqrt(365)) if downside > 0 else None
    years = (float(equity_ts[-1] - equity_ts[0]) / (365 * DAY_MS)) if equity.size > 1 else 0.0
    cagr = None
    if years > 0 and final > 0:
        cagr = ((final / initial_balance) ** (1.0 / years) - 1.0) * 100.0
    calmar = cagr / dd_pct if (cagr is not None and dd_pct > 0) else None
    holding = (
        (trades["exit_ts"].to_numpy(np.int64) - trades["entry_ts"].to_numpy(np.int64)) / 3_600_000.0 if n else None
    )
    return {
        "trades": n,
        "wins": int((net > 0).sum()),
        "losses": int((net <= 0).sum()),
        "win_rate": float((net > 0).mean()) if n else None,
        "profit_factor": _profit_factor(net),
        "expectancy": float(net.mean()) if n else None,
        "avg_r": float(trades["r_multiple"].mean()) if n else None,
        "net_pnl": float(net.sum()),
        "gross_pnl": float(trades["gross_pnl"].sum()) if n else 0.0,
        "fees": float(trades["fees"].sum()) if n else 0.0,
        "funding": float(trades["funding"].sum()) if n else 0.0,
        "return_pct": (final / initial_balance - 1.0) * 100.0,
        "max_drawdown": dd_abs,
        "max_drawdown_pct": dd_pct,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": calmar,
        "cagr_pct": cagr,
        "exposure_pct": None if exposure is None else exposure * 100.0,
        "avg_holding_hours": float(holding.mean()) if n else None,
        "best_trade": float(net.max()) if n else None,
        "worst_trade": float(net.min()) if n else None,
    }


def _group_table(trades: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    columns = ["trades", "win_rate", "net_pnl", "avg_r", "profit_factor"]
    if len(trades) == 0:
        return pd.DataFrame(columns=columns)
    rows = {}
    for name, group in trades.groupby(key, sort=True):
        net = group["net_pnl"].to_numpy(np.float64)
        rows[name] = {
            "trades": len(group),
            "win_rate": float((net > 0).mean()),
            "net_pnl": float(net.sum()),
            "avg_r": float(group["r_multiple"].mean()),
            "profit_factor": _profit_factor(net),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def per_symbol_table(trades: pd.DataFrame) -> pd.DataFrame:
    return _group_table(trades, trades["symbol"] if len(trades) else pd.Series(dtype=str))


def per_month_table(trades: pd.DataFrame) -> pd.DataFrame:
    if len(trades) == 0:
        return _group_table(trades, pd.Series(dtype=str))
    month = pd.to_datetime(trades["exit_ts"], unit="ms", utc=True).dt.strftime("%Y-%m")
    return _group_table(trades, month)
