"""PNG plots of backtests, rendered headless (matplotlib's Agg canvas, no pyplot global state: thread-safe).

Public API
----------
``equity_drawdown_png(equity_ts, equity, *, title="Equity", initial_balance=None) -> bytes``
    Two stacked panels sharing the time axis: the equity curve (with the starting balance as a dashed line) and
    the drawdown in % from the running peak. Returns the PNG file content (starts with ``b"\\x89PNG"``).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.errors import InsufficientData


def equity_drawdown_png(
    equity_ts: np.ndarray, equity: np.ndarray, *, title: str = "Equity", initial_balance: float | None = None
) -> bytes:
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        raise InsufficientData("cannot plot an empty equity curve")
    dates = pd.to_datetime(np.asarray(equity_ts, dtype=np.int64), unit="ms", utc=True)
    peak = np.maximum.accumulate(equity)
    dd_pct = np.divide(equity - peak, peak, out=np.zeros_like(equity), where=peak > 0) * 100.0

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax_eq.plot(dates, equity, color="#1f77b4", linewidth=1.2, label="equity")
    if initial_balance is not None:
        ax_eq.axhline(initial_balance, color="grey", linestyle="--", linewidth=0.8, label="start")
    ax_eq.set_title(title)
    ax_eq.set_ylabel("USDT")
    ax_eq.grid(alpha=0.3)
    ax_eq.legend(loc="upper left")
    ax_dd.fill_between(dates, dd_pct, 0.0, color="#d62728", alpha=0.4, step="post")
    ax_dd.set_ylabel("drawdown %")
    ax_dd.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
