"""A finished backtest's metrics as the report page shows them: labelled, grouped, each number in its unit and
rounded (money to cents, percentages to two decimals, ratios to two), never a raw float."""

from __future__ import annotations

from typing import Any

from signals.display import NOTHING, money_text, percent_text, ratio_text
from web.templatetags.numbers import utc

# key → (label, kind); groups in the order the page shows them
METRIC_GROUPS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Run",
        (
            ("symbols", "Symbols", "list"),
            ("days", "Days", "int"),
            ("range_start", "From", "time"),
            ("range_end", "To", "time"),
            ("data_problems", "Data problems", "text"),
        ),
    ),
    (
        "Result",
        (
            ("net_pnl", "Net PnL", "money"),
            ("return_pct", "Return", "percent"),
            ("cagr_pct", "CAGR", "percent"),
            ("gross_pnl", "Gross PnL", "money"),
            ("fees", "Fees", "money"),
            ("funding", "Funding", "money"),
        ),
    ),
    (
        "Trades",
        (
            ("trades", "Trades", "int"),
            ("wins", "Wins", "int"),
            ("losses", "Losses", "int"),
            ("win_rate", "Win rate", "fraction"),
            ("expectancy", "Expectancy per trade", "money"),
            ("avg_r", "Average R", "ratio"),
            ("best_trade", "Best trade", "money"),
            ("worst_trade", "Worst trade", "money"),
            ("avg_holding_hours", "Average holding", "hours"),
        ),
    ),
    (
        "Risk",
        (
            ("max_drawdown", "Max drawdown", "money"),
            ("max_drawdown_pct", "Max drawdown %", "percent"),
            ("profit_factor", "Profit factor", "ratio"),
            ("sharpe", "Sharpe", "ratio"),
            ("sortino", "Sortino", "ratio"),
            ("calmar", "Calmar", "ratio"),
            ("exposure_pct", "Exposure", "percent"),
        ),
    ),
)
TABLE_COLUMNS = (
    ("trades", "Trades", "int"),
    ("win_rate", "Win rate", "fraction"),
    ("net_pnl", "Net PnL", "money"),
    ("avg_r", "Average R", "ratio"),
    ("profit_factor", "Profit factor", "ratio"),
)


def value_text(value: Any, kind: str) -> str:
    if value is None:
        return NOTHING
    if kind == "money":
        return money_text(value)
    if kind == "percent":
        return percent_text(value)
    if kind == "fraction":
        return percent_text(value, 1, fraction=True)
    if kind == "ratio":
        return ratio_text(value)
    if kind == "hours":
        return f"{ratio_text(value, 1)} h"
    if kind == "time":
        return utc(value)
    if kind == "list":
        return ", ".join(str(item) for item in value) if isinstance(value, list | tuple) else str(value)
    if kind == "int":
        return str(int(value)) if isinstance(value, int | float) else str(value)
    if isinstance(value, float):  # a metric this page does not know yet: a number, not 17 digits
        return ratio_text(value, 4)
    return str(value)


def metric_groups(metrics: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(group title, [(label, text), …]), …]; scalar metrics not named above come last under "Other"."""
    known = {key for _, rows in METRIC_GROUPS for key, _, _ in rows}
    groups = [
        (title, [(label, value_text(metrics[key], kind)) for key, label, kind in rows if key in metrics])
        for title, rows in METRIC_GROUPS
    ]
    other = [
        (key.replace("_", " "), value_text(value, ""))
        for key, value in metrics.items()
        if key not in known and not isinstance(value, dict | list)
    ]
    if other:
        groups.append(("Other", other))
    return [(title, rows) for title, rows in groups if rows]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per-symbol or per-month rows: the key, then TABLE_COLUMNS formatted."""
    return [
        [str(row.get("key", ""))] + [value_text(row.get(key), kind) for key, _, kind in TABLE_COLUMNS] for row in rows
    ]


def params_text(params: dict[str, Any]) -> str:
    """ "BTC/USDT:USDT, XRP/USDT:USDT · 30 days · stop_atr_mult=1.5" instead of a dict."""
    parts = [", ".join(params.get("symbols", [])) or "no symbols"]
    if params.get("days"):
        parts.append(f"{params['days']} days")
    for key, value in params.items():
        if key in ("strategy", "config") and isinstance(value, dict):
            parts.extend(f"{name}={setting}" for name, setting in value.items())
        elif key not in ("symbols", "days"):
            parts.append(f"{key}={value}")
    return " · ".join(parts)
