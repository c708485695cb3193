"""The Django side of backtests: clean the request, load candles through the market-data port, call the engine.

``engine.backtest.run_backtest`` does the simulation (same strategy and exit rules as live); this module only feeds
it candles from ``signals.market_data`` (the replay data under ``data/`` by default) and turns the result into JSON
metrics and an equity PNG for ``BacktestRun``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.backtest import BacktestConfig, run_backtest, sweep
from engine.candles import Candles, check_candles
from engine.errors import EngineError, InvalidParameters
from engine.strategy import StrategyParams, bars_recommended
from signals.funding import funding_rate_history
from signals.market_data import MarketDataError, SymbolUnavailable, get_market_data

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
CANDLE_MS = 900_000
MAX_DAYS = 3650
MAX_SYMBOLS = 200
MAX_SWEEP_COMBINATIONS = 200
CONFIG_FIELDS = (
    "initial_balance",
    "fee_taker",
    "fee_maker",
    "slippage",
    "funding_rate_8h",
    "sizing_mode",
    "sizing_pct",
    "leverage",
    "max_leverage",
)

Progress = Callable[[str, int, int], None]


class BacktestRequestError(ValueError):
    """A backtest request that cannot run; the message is shown to the operator as it is."""


def backtest_params_clean(params: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise ``{"symbols": [...] | "A,B", "days": int, "strategy": {...}, "config": {...}}``."""

    if not isinstance(params, Mapping):
        raise BacktestRequestError("Backtest parameters must be an object.")
    symbols = params.get("symbols")
    if isinstance(symbols, str):
        symbols = [s for s in (part.strip() for part in symbols.split(",")) if s]
    if (
        not isinstance(symbols, list)
        or not symbols
        or not all(isinstance(s, str) and 0 < len(s) <= 40 for s in symbols)
    ):
        raise BacktestRequestError("Give one or more symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT.")
    if len(symbols) > MAX_SYMBOLS:
        raise BacktestRequestError(f"At most {MAX_SYMBOLS} symbols per backtest.")
    days = params.get("days", 30)
    if isinstance(days, bool) or not isinstance(days, int | str):
        raise BacktestRequestError("days must be a whole number.")
    try:
        days = int(days)
    except ValueError:
        raise BacktestRequestError("days must be a whole number.") from None
    if not 1 <= days <= MAX_DAYS:
        raise BacktestRequestError(f"days must be between 1 and {MAX_DAYS} (an empty range cannot be tested).")
    strategy = dict(params.get("strategy") or {})
    config = dict(params.get("config") or {})
    known = {f.name for f in dataclasses.fields(StrategyParams)}
    if unknown := set(strategy) - known:
        raise BacktestRequestError(f"Unknown strategy parameter(s): {', '.join(sorted(unknown))}.")
    if unknown := set(config) - set(CONFIG_FIELDS):
        raise BacktestRequestError(f"Unknown backtest setting(s): {', '.join(sorted(unknown))}.")
    try:
        StrategyParams(**strategy).validate()
        BacktestConfig(**config).validate()
    except (InvalidParameters, TypeError) as error:
        raise BacktestRequestError(str(error)) from None
    return {"symbols": list(dict.fromkeys(symbols)), "days": days, "strategy": strategy, "config": config}


def backtest_candles_load(
    *, symbols: list[str], days: int, warmup_bars: int, progress: Progress | None = None
) -> tuple[dict[str, tuple[Candles, None]], int]:
    """15m candles for each symbol covering ``days`` (plus warm-up) up to the end of the recorded history
    (``MarketData.history``: live, now; the replay, the end of its data whatever its clock shows), and the start (ms)
    of the tested range. Raises BacktestRequestError for an unknown symbol or a symbol without candles."""

    market_data = get_market_data().history()
    limit = days * (DAY_MS // CANDLE_MS) + warmup_bars + 1
    data: dict[str, tuple[Candles, None]] = {}
    for number, symbol in enumerate(symbols, start=1):
        try:
            candles = market_data.ohlcv(symbol, "15m", limit)
        except SymbolUnavailable:
            known = sorted(m.symbol for m in market_data.markets())
            raise BacktestRequestError(
                f"Unknown symbol {symbol}: no market data for it. Known symbols: {', '.join(known) or 'none'}."
            ) from None
        except MarketDataError as error:
            raise BacktestRequestError(f"{symbol}: {error}") from None
        if len(candles) == 0:
            raise BacktestRequestError(f"{symbol}: no 15m candles in the requested range.")
        data[symbol] = (candles, None)
        if progress:
            progress("load", number, len(symbols))
    end_ms = max(int(c.ts[-1]) for c, _ in data.values()) + CANDLE_MS
    return data, end_ms - days * DAY_MS


def backtest_funding_load(
    *, symbols: list[str], since_ms: int | None = None, market_data: Any = None
) -> tuple[dict[str, tuple[Any, Any]], dict[str, str]]:
    """Historical 8h funding rates per symbol for the engine, and where each came from.

    Replay: the dataset's recorded funding history (``data/…-8h-funding_rate.feather``). Otherwise: the snapshots the
    funding monitor stored (``signals.funding.funding_rate_history``). Settlements without a known rate are charged at
    the flat ``funding_rate_8h`` of the config (the source then says so)."""
    import numpy as np

    market_data = market_data if market_data is not None else get_market_data()
    dataset = getattr(market_data, "dataset", None)
    series: dict[str, tuple[Any, Any]] = {}
    sources: dict[str, str] = {}
    for symbol in symbols:
        market = getattr(dataset, "markets", {}).get(symbol) if dataset is not None else None
        if market is not None and market.funding_ts.size:
            series[symbol] = (market.funding_ts, market.funding_rate)
            sources[symbol] = f"replay history ({market.funding_ts.size} settlements), flat rate outside it"
            continue
        since = datetime.fromtimestamp(since_ms / 1000, tz=UTC) if since_ms is not None else None
        rows = funding_rate_history(symbol=symbol, since=since)
        if rows:
            ts = np.array([int(moment.timestamp() * 1000) for moment, _ in rows], dtype=np.int64)
            series[symbol] = (ts, np.array([float(rate) for _, rate in rows]))
            sources[symbol] = f"stored snapshots ({len(rows)} settlements), flat rate outside them"
        else:
            sources[symbol] = "flat rate (no funding history)"
    return series, sources


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item"):  # numpy scalars
        return _json_number(value.item())
    return value


def _table(frame) -> list[dict[str, Any]]:
    return [{"key": str(index), **{k: _json_number(v) for k, v in row.items()}} for index, row in frame.iterrows()]


def candles_quality_report(data: Mapping[str, tuple[Candles, Any]]) -> dict[str, dict[str, Any]]:
    """Gaps, duplicates, NaN rows... of each symbol's 15m candles (``engine.candles.check_candles``), for the report.

    Gaps do not stop a backtest (the engine steps over them, as the live scanner would see a hole); duplicates and
    steps back in time do (``run_backtest`` refuses them with a clear message)."""

    report = {}
    for symbol, (candles, _) in data.items():
        found = check_candles(candles, CANDLE_MS)
        report[symbol] = {
            "candles": found.rows,
            "gaps": found.gaps,
            "missing_candles": found.missing_candles,
            "duplicates": found.duplicates,
            "non_monotonic": found.non_monotonic,
            "nan_rows": found.nan_rows,
            "zero_volume": found.zero_volume,
            "problems": list(found.problems),
            "warnings": list(found.warnings),
        }
    return report


def backtest_perform(
    *,
    params: Mapping[str, Any],
    progress: Progress | None = None,
    load: Callable[..., tuple[dict, int]] | None = None,
    funding_load: Callable[..., tuple[dict, dict]] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Run a cleaned request; returns (metrics JSON, equity PNG bytes — empty when there is no equity curve)."""

    strategy = StrategyParams(**params.get("strategy", {}))
    config = BacktestConfig(**params.get("config", {}))
    load = load or backtest_candles_load
    data, start_ms = load(
        symbols=params["symbols"], days=params["days"], warmup_bars=bars_recommended(strategy), progress=progress
    )
    funding, funding_sources = (funding_load or backtest_funding_load)(
        symbols=params["symbols"], since_ms=min(int(c.ts[0]) for c, _ in data.values())
    )
    symbols = params["symbols"]
    if progress:
        progress("simulate", 0, len(symbols))
    try:  # the engine reports each symbol's signals and exits as done; the account-wide pass follows
        result = run_backtest(
            data,
            strategy,
            config,
            symbols=symbols,
            start_ms=start_ms,
            funding=funding,
            progress=(lambda done, total: progress("simulate", done, total)) if progress else None,
        )
    except EngineError as error:
        raise BacktestRequestError(str(error)) from None
    metrics = {key: _json_number(value) for key, value in result.metrics().items()}
    metrics["data_quality"] = candles_quality_report(data)
    metrics["data_problems"] = (
        "; ".join(
            f"{symbol}: {', '.join(found['problems'])}"
            for symbol, found in metrics["data_quality"].items()
            if found["problems"]
        )
        or "none"
    )
    first_ms = min(int(c.ts[0]) for c, _ in data.values())
    metrics.update(
        {
            "symbols": list(result.symbols),
            "days": params["days"],
            "range_start": datetime.fromtimestamp(max(start_ms, first_ms) / 1000, tz=UTC).isoformat(),
            "range_end": datetime.fromtimestamp(
                max(int(c.ts[-1]) for c, _ in data.values()) / 1000, tz=UTC
            ).isoformat(),
            "candles": {symbol: len(c) for symbol, (c, _) in data.items()},
            "counters": {k: int(v) for k, v in result.counters.items()},
            "funding_sources": funding_sources,
            "per_symbol": _table(result.per_symbol()),
            "per_month": _table(result.per_month()),
        }
    )
    png = (
        result.equity_png(title=f"Backtest {', '.join(result.symbols)[:80]} ({params['days']} days)")
        if len(result.equity)
        else b""
    )
    if progress:
        progress("plot", 1, 1)
    return metrics, png


# ---- parameter sweep ---------------------------------------------------------------------------------------------


def _grid_value(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("none", "null", "off"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def sweep_grid_parse(text: str) -> dict[str, list[Any]]:
    """``"stop_atr_mult=1,1.5,2;ema_fast=7,9;exit.trailing_mode=none,atr"`` → ``{name: [values]}``."""
    grid: dict[str, list[Any]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, values = part.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise BacktestRequestError(f"Bad sweep part {part!r}: write name=v1,v2;other=v1,v2.")
        grid[name.strip()] = [_grid_value(v) for v in values.split(",") if v.strip()]
    if not grid:
        raise BacktestRequestError("The sweep grid is empty: write name=v1,v2;other=v1,v2.")
    combinations = math.prod(len(v) for v in grid.values())
    if combinations > MAX_SWEEP_COMBINATIONS:
        raise BacktestRequestError(f"{combinations} combinations; at most {MAX_SWEEP_COMBINATIONS} per sweep.")
    return grid


def backtest_sweep_perform(
    *,
    params: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    metric: str,
    processes: int = 2,
    load: Callable[..., tuple[dict, int]] | None = None,
) -> list:
    """Backtest every combination of ``grid`` on the request's candles in ``processes`` worker processes, ranked by
    ``metric`` (``engine.backtest.sweep``; invalid combinations are kept, with their error, at the end)."""

    strategy = StrategyParams(**params.get("strategy", {}))
    config = BacktestConfig(**params.get("config", {}))
    load = load or backtest_candles_load
    data, start_ms = load(symbols=params["symbols"], days=params["days"], warmup_bars=bars_recommended(strategy))
    try:
        return sweep(
            data, grid, metric, processes, params=strategy, config=config, symbols=params["symbols"], start_ms=start_ms
        )
    except EngineError as error:
        raise BacktestRequestError(str(error)) from None


# ---- the report in Telegram --------------------------------------------------------------------------------------

REPORT_METRICS = (
    ("trades", "Trades", "{:d}"),
    ("win_rate", "Win rate", "{:.1%}"),
    ("profit_factor", "Profit factor", "{:.2f}"),
    ("net_pnl", "Net PnL", "{:+,.2f} USDT"),
    ("return_pct", "Return", "{:+.2f} %"),
    ("max_drawdown_pct", "Max drawdown", "{:.2f} %"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("expectancy", "Expectancy", "{:+.2f} USDT"),
    ("avg_r", "Average R", "{:+.2f}"),
)


def _metric_text(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):  # "inf" from _json_number
        return "∞" if value == "inf" else value
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def backtest_report_caption(run) -> str:
    """A short HTML caption (every value escaped) for the equity chart, or the failure reason."""
    from html import escape

    symbols = ", ".join(run.params.get("symbols", []))
    head = f"<b>Backtest #{run.pk}</b> {escape(symbols[:200])} · {escape(str(run.params.get('days', '?')))} days"
    if run.status != "succeeded":
        return f"{head}\n⚠️ failed: {escape(run.error[:500] or 'unknown error')}"
    lines = [head]
    for key, label, fmt in REPORT_METRICS:
        lines.append(f"{label}: {escape(_metric_text(run.metrics.get(key), fmt))}")
    problems = run.metrics.get("data_problems")
    if problems and problems != "none":
        lines.append(f"Data: {escape(str(problems)[:300])}")
    return "\n".join(lines)[:1024]  # Telegram's caption limit


def backtest_report_recipients(run) -> list[int]:
    """The Telegram admin who asked (``/backtest``); for a run launched from the web admin, the configured Telegram
    admins (``settings.ADMIN_TELEGRAM_IDS``)."""
    from django.conf import settings

    if run.requested_by_telegram_id:
        return [int(run.requested_by_telegram_id)]
    return [int(chat) for chat in settings.ADMIN_TELEGRAM_IDS]
