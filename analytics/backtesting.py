"""The Django side of backtests: clean the request, load candles through the market-data port, call the engine.

``engine.backtest.run_backtest`` does the simulation (same strategy and exit rules as live); this module only feeds
it candles from ``signals.market_data`` (the replay data under ``data/`` by default) and turns the result into JSON
metrics and an equity PNG for ``BacktestRun``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.candles import Candles

DAY_MS = 86_400_000
CANDLE_MS = 900_000
MAX_DAYS = 3650
MAX_SYMBOLS = 200
CONFIG_FIELDS = ("initial_balance", "fee_taker", "fee_maker", "slippage", "funding_rate_8h", "sizing_mode",
                 "sizing_pct", "leverage", "max_leverage")

Progress = Callable[[str, int, int], None]


class BacktestRequestError(ValueError):
    """A backtest request that cannot run; the message is shown to the operator as it is."""


def backtest_params_clean(params: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise ``{"symbols": [...] | "A,B", "days": int, "strategy": {...}, "config": {...}}``."""
    from engine.backtest import BacktestConfig
    from engine.errors import InvalidParameters
    from engine.strategy import StrategyParams

    if not isinstance(params, Mapping):
        raise BacktestRequestError("Backtest parameters must be an object.")
    symbols = params.get("symbols")
    if isinstance(symbols, str):
        symbols = [s for s in (part.strip() for part in symbols.split(",")) if s]
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and 0 < len(s) <= 40 for s in symbols):
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


def backtest_candles_load(*, symbols: list[str], days: int, warmup_bars: int,
                          progress: Progress | None = None) -> tuple[dict[str, tuple[Candles, None]], int]:
    """15m candles for each symbol covering ``days`` (plus warm-up) up to the market-data clock, and the start (ms)
    of the tested range. Raises BacktestRequestError for an unknown symbol or a symbol without candles."""
    from signals.market_data import MarketDataError, SymbolUnavailable, get_market_data

    market_data = get_market_data()
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


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item"):  # numpy scalars
        return _json_number(value.item())
    return value


def _table(frame) -> list[dict[str, Any]]:
    return [{"key": str(index), **{k: _json_number(v) for k, v in row.items()}} for index, row in frame.iterrows()]


def backtest_perform(*, params: Mapping[str, Any], progress: Progress | None = None,
                     load: Callable[..., tuple[dict, int]] | None = None) -> tuple[dict[str, Any], bytes]:
    """Run a cleaned request; returns (metrics JSON, equity PNG bytes — empty when there is no equity curve)."""
    from engine.backtest import BacktestConfig, run_backtest
    from engine.errors import EngineError
    from engine.strategy import StrategyParams, bars_recommended

    strategy = StrategyParams(**params.get("strategy", {}))
    config = BacktestConfig(**params.get("config", {}))
    load = load or backtest_candles_load
    data, start_ms = load(symbols=params["symbols"], days=params["days"], warmup_bars=bars_recommended(strategy),
                          progress=progress)
    if progress:
        progress("simulate", 0, 1)
    try:
        result = run_backtest(data, strategy, config, symbols=params["symbols"], start_ms=start_ms)
    except EngineError as error:
        raise BacktestRequestError(str(error)) from None
    if progress:
        progress("simulate", 1, 1)
    metrics = {key: _json_number(value) for key, value in result.metrics().items()}
    first_ms = min(int(c.ts[0]) for c, _ in data.values())
    metrics.update(
        {
            "symbols": list(result.symbols),
            "days": params["days"],
            "range_start": datetime.fromtimestamp(max(start_ms, first_ms) / 1000, tz=UTC).isoformat(),
            "range_end": datetime.fromtimestamp(max(int(c.ts[-1]) for c, _ in data.values()) / 1000, tz=UTC).isoformat(),
            "candles": {symbol: len(c) for symbol, (c, _) in data.items()},
            "counters": {k: int(v) for k, v in result.counters.items()},
            "per_symbol": _table(result.per_symbol()),
            "per_month": _table(result.per_month()),
        }
    )
    png = result.equity_png(title=f"Backtest {', '.join(result.symbols)[:80]} ({params['days']} days)") if len(result.equity) else b""
    if progress:
        progress("plot", 1, 1)
    return metrics, png
