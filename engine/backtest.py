"""Fast backtester on the live strategy code (``engine.strategy`` + ``engine.confirmation``) and the live exit rules
(``engine.exits.step``).

Public API
----------
``BacktestConfig``  frozen dataclass: initial balance, taker/maker fees, slippage, funding, sizing, leverage, exit
                    rules, per-symbol ``MarketLimits``; ``.validate()`` raises ``InvalidParameters``.
``run_backtest(data, params, config, *, symbols=None, start_ms=None, end_ms=None, funding=None, processes=1,
    progress=None) -> BacktestResult``
    ``data``: ``Mapping[symbol, (Candles 15m, Candles 1h | None)]`` (1h None: resampled from the 15m candles).
    ``funding``: optional ``Mapping[symbol, (ts_ms array, rate array)]`` (8h settlements; timestamps are floored to
    the 8h grid); settlements missing from a series, and symbols without one, use ``config.funding_rate_8h``.
    ``start_ms``: first signal candle considered (earlier candles are still used to warm the indicators);
    ``end_ms``: candles with open time >= end_ms are dropped (positions still open are closed at the last close).
    ``processes`` > 1 spreads the per-symbol work over worker processes (keep 1 inside daemonic Celery workers); one
    process already handles about 2 million candles per CPU-second with the compiled loops
    (``benchmarks/bench_backtest.py``), so more processes pay only for very large runs.
    ``progress(done, total)`` is called after each symbol's signals and exits are computed (for a progress bar).
    Errors: ``UnknownSymbol`` (symbol not in ``data``), ``InvalidParameters`` (bad params/config, empty range),
    ``InsufficientData`` (no candles in range, fewer than ``bars_needed + 1`` candles, duplicate timestamps);
    all are ``engine.errors.EngineError`` with a message naming the symbol/parameter, raised before any work.
``BacktestResult``  ``trades`` (list of ``Trade``), ``equity_ts``/``equity`` (mark-to-market at every 15m close of
                    the union time grid), ``exposure``, ``counters``; ``.trades_frame()``, ``.metrics()``,
                    ``.per_symbol()``, ``.per_month()``, ``.equity_png()``.
``Trade``           symbol, side, signal_ts, entry_ts, entry_price, quantity, stop, tp1, tp2, exit_ts, exit_price
                    (quantity-weighted), reason (final fill's reason), reasons (every fill), fills, gross_pnl, fees,
                    funding, net_pnl, r_multiple.
``sweep(data, grid, metric, processes=2, *, params=None, config=None, descending=None, **run_kwargs)``
    runs ``run_backtest`` for every combination of ``grid`` (``{name: [values]}``; names are ``StrategyParams``
    fields, ``BacktestConfig`` fields, or ``exit.<ExitRules field>``) in a process pool and returns a list of
    ``SweepRow(params, metrics, error)`` ranked by ``metric`` (descending, except drawdowns which rank ascending);
    invalid combinations (e.g. ema_fast >= ema_slow) are kept with their error message and ranked last. Combinations
    with the same strategy parameters run in the same worker, which computes each symbol's signals for them once.

Simulation rules (all shared with the reference simulator in ``engine/tests/reference_backtest.py``)
------------------------------------------------------------------------------------------------------
- Signals: ``entry_signals`` on closed 15m candles, confirmed by the 1h quorum (``quorum_many``) at the signal
  candle's CLOSE time. Entry at the OPEN of the next candle (no look-ahead), taker fee, slippage against us.
  The signal's stop/tp1/tp2 are absolute prices; a signal whose stop or tp1 is already crossed by the entry fill is
  dropped (counted in ``counters["levels_crossed_at_open"]``).
- One open signal per symbol, as on the live platform: a signal's lifecycle (entry to exit) does not depend on the
  account; if the account cannot size it (below the market minimum) the trade is skipped (``counters[
  "below_minimum"]``) but the symbol stays busy until that signal's exit.
- Exits: ``engine.exits.step`` on each candle of the position (including the entry candle). Quiet candles are
  skipped with ``engine.exits.scan_quiet_bars`` (proven equal to stepping every candle); every fill
  comes from ``step``. TP fills are maker (``targets_as_maker``) without slippage; stop/trailing/break-even/expiry
  and the end-of-data close (reason ``"end"``) are taker fills with slippage.
- Funding: every 8h settlement T with entry_ts < T <= exit candle open time is charged on the quantity open at T,
  at the open price of the first candle with open time >= T (long pays a positive rate).
- Sizing: ``engine.sizing.position_quantity`` (Decimal) on the wallet balance = initial balance + every cash flow
  booked on candles strictly before the entry candle (fees, realised PnL, funding of all symbols); positions are
  sized in (entry time, symbol) order.
- Equity: balance + unrealised PnL at each candle close; trades closed at the same candle are realised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import heapq
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from engine import compiled
from engine import metrics as metrics_mod
from engine.candles import Candles, resample
from engine.confirmation import hourly_checks, quorum_many
from engine.errors import InsufficientData, InvalidParameters, UnknownSymbol
from engine.exits import ExitRules, PositionState, scan_quiet_bars, step
from engine.pnl import fee as fee_of
from engine.pnl import funding_payment, price_pnl, r_multiple, slipped_price
from engine.sizing import MarketLimits, position_quantity
from engine.strategy import SIGNAL_TIMEFRAME_MS, StrategyParams, bars_needed, entry_signals

FUNDING_PERIOD_MS = 8 * 3_600_000
TAKER_REASONS = frozenset({"sl", "trailing", "breakeven", "expiry", "end"})
SymbolData = tuple[Candles, Candles | None]


@dataclass(frozen=True)
class BacktestConfig:
    initial_balance: float = 10_000.0
    fee_taker: float = 0.0005
    fee_maker: float = 0.0002
    targets_as_maker: bool = True
    slippage: float = 0.0002
    funding_rate_8h: float = 0.0001
    sizing_mode: str = "risk_pct"
    sizing_pct: float = 1.0
    leverage: float = 3.0
    max_leverage: float = 20.0
    exit_rules: ExitRules = field(default_factory=ExitRules)
    markets: Mapping[str, MarketLimits] | None = None

    def validate(self) -> BacktestConfig:
        checks = [
            (self.initial_balance > 0, f"initial_balance must be > 0, got {self.initial_balance}"),
            (0 <= self.fee_taker < 0.05, f"fee_taker must be in [0, 0.05), got {self.fee_taker}"),
            (-0.01 < self.fee_maker < 0.05, f"fee_maker must be in (-0.01, 0.05), got {self.fee_maker}"),
            (0 <= self.slippage < 0.05, f"slippage must be in [0, 0.05), got {self.slippage}"),
            (abs(self.funding_rate_8h) < 0.05, f"funding_rate_8h must be within +-0.05, got {self.funding_rate_8h}"),
            (self.sizing_mode in ("risk_pct", "balance_pct"), f"unknown sizing_mode {self.sizing_mode!r}"),
            (0 < self.sizing_pct <= 100, f"sizing_pct must be in (0, 100], got {self.sizing_pct}"),
            (0 < self.leverage <= 200, f"leverage must be in (0, 200], got {self.leverage}"),
            (0 < self.max_leverage <= 200, f"max_leverage must be in (0, 200], got {self.max_leverage}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidParameters(message)
        self.exit_rules.validate()
        return self


class Fill(NamedTuple):
    ts: int
    reason: str
    price: float
    quantity: float


@dataclass(frozen=True)
class Trade:
    symbol: str
    side: str
    signal_ts: int
    entry_ts: int
    entry_price: float
    quantity: float
    stop: float
    tp1: float | None
    tp2: float | None
    exit_ts: int
    exit_price: float
    reason: str
    reasons: tuple[str, ...]
    fills: tuple[Fill, ...]
    gross_pnl: float
    fees: float
    funding: float
    net_pnl: float
    r_multiple: float


# ---- per-symbol phase: signal lifecycles in unit quantity (independent of the account) ------------------------


class _Path(NamedTuple):
    """One signal's lifecycle: entry and exit fills as fractions of the position, funding settlements."""

    symbol: str
    side: str
    signal_ts: int
    entry_bar: int
    entry_ts: int
    entry_price: float  # the fill, after slippage
    stop: float
    tp1: float | None
    tp2: float | None
    exit_bar: int
    fills: tuple[tuple[int, int, str, float, float], ...]  # (bar, ts, reason, fill price, fraction of quantity)
    funding: tuple[tuple[int, int, float, float, float], ...]  # (bar, ts, mark, fraction open, rate)


def _prepare(c15: Candles, c1h: Candles | None, end_ms: int | None) -> tuple[Candles, Candles]:
    if end_ms is not None:
        c15 = c15._take(slice(0, int(np.searchsorted(c15.ts, end_ms, side="left"))))
        if c1h is not None:
            c1h = c1h._take(slice(0, int(np.searchsorted(c1h.ts, end_ms - 3_600_000 + 1, side="left"))))
    if c1h is None:
        c1h = resample(c15, 60, source_timeframe_ms=SIGNAL_TIMEFRAME_MS)
    return c15, c1h


def candidate_signals(
    c15: Candles, c1h: Candles, params: StrategyParams, start_ms: int | None
) -> tuple[np.ndarray, Any]:
    """Indices of confirmed signal candles that have a next candle to enter on (and are >= start_ms)."""
    sig = entry_signals(c15, params)
    idx = sig.signal_indices
    idx = idx[idx < len(c15) - 1]
    if start_ms is not None:
        idx = idx[c15.ts[idx] >= start_ms]
    if idx.size:
        checks = hourly_checks(c1h, params)
        conf = quorum_many(c1h, sig.side[idx], c15.ts[idx] + SIGNAL_TIMEFRAME_MS, params, checks=checks)
        idx = idx[conf.ok]
    return idx, sig


def _funding_rates(times: np.ndarray, series: tuple[np.ndarray, np.ndarray] | None, default: float) -> np.ndarray:
    if series is None or len(times) == 0:
        return np.full(len(times), default)
    s_ts = np.asarray(series[0], dtype=np.int64)
    s_ts = s_ts - s_ts % FUNDING_PERIOD_MS
    s_rate = np.asarray(series[1], dtype=np.float64)
    order = np.argsort(s_ts, kind="stable")
    s_ts, s_rate = s_ts[order], s_rate[order]
    pos = np.searchsorted(s_ts, times)
    found = (pos < len(s_ts)) & (s_ts[np.minimum(pos, len(s_ts) - 1)] == times)
    return np.where(found, s_rate[np.minimum(pos, len(s_ts) - 1)], default)


class _Candidates(NamedTuple):
    """The confirmed signal candles of one symbol (``idx``) and their side and levels."""

    idx: np.ndarray
    side: np.ndarray
    stop: np.ndarray
    tp1: np.ndarray
    tp2: np.ndarray
    atr: np.ndarray


def ts_list_get(ts: np.ndarray, i: int) -> int:
    return int(ts[i])


def symbol_paths(
    symbol: str,
    c15: Candles,
    c1h: Candles,
    params: StrategyParams,
    config: BacktestConfig,
    *,
    start_ms: int | None = None,
    funding: tuple[np.ndarray, np.ndarray] | None = None,
    signal_cache: dict[Any, _Candidates] | None = None,
) -> tuple[list[_Path], dict[str, int]]:
    rules = config.exit_rules
    n = len(c15)
    counters = {"signals": 0, "levels_crossed_at_open": 0, "symbol_busy": 0}
    key = (symbol, params, start_ms)
    found = None if signal_cache is None else signal_cache.get(key)
    if found is None:
        idx, sig = candidate_signals(c15, c1h, params, start_ms)
        found = _Candidates(idx, sig.side[idx], sig.stop[idx], sig.tp1[idx], sig.tp2[idx], sig.atr[idx])
        if signal_cache is not None:
            signal_cache[key] = found
    idx = found.idx
    counters["signals"] = int(idx.size)
    if idx.size == 0:
        return [], counters
    ts, op, hi, lo, cl = c15.ts, c15.open, c15.high, c15.low, c15.close
    e = idx + 1
    is_long = found.side == 1
    sgn = np.where(is_long, 1.0, -1.0)
    slip = config.slippage
    fill = np.where(is_long, op[e] * (1 + slip), op[e] * (1 - slip))
    stop, tp1, tp2, atr = found.stop, found.tp1, found.tp2, found.atr
    valid = (
        ((fill - stop) * sgn > 0)
        & (np.isnan(tp1) | ((tp1 - fill) * sgn > 0))
        & (np.isnan(tp2) | ((tp2 - fill) * sgn > 0))
    )
    counters["levels_crossed_at_open"] = int((~valid).sum())
    idx, e, is_long, sgn, fill, stop, tp1, tp2, atr = (
        a[valid] for a in (idx, e, is_long, sgn, fill, stop, tp1, tp2, atr)
    )
    m = idx.size
    if m == 0:
        return [], counters
    ends = np.full(m, n, dtype=np.int64)
    # phase 1 for every candidate at once: first candle where step() acts
    q1 = scan_quiet_bars(
        ts=ts,
        open=op,
        high=hi,
        low=lo,
        start=e,
        end=ends,
        long=is_long,
        entry=fill,
        stop=stop,
        initial_stop=stop,
        tp1=tp1,
        tp2=tp2,
        best=fill.copy(),
        atr=atr,
        opened_ts=ts[e],
        rules=rules,
    )
    # predicted state after a TP1-only candle (verified against step() per trade below; fallback if different)
    k1 = q1.bar
    has = k1 >= 0
    kk = np.where(has, k1, 0)
    high_l = np.where(is_long, hi[kk], -lo[kk])
    low_l = np.where(is_long, lo[kk], -hi[kk])
    open_l = op[kk] * sgn
    stop_l = q1.stop * sgn
    expired = ts[kk] >= ts[e] + rules.expiry_seconds * 1000 if rules.expiry_seconds is not None else np.zeros(m, bool)
    stopped = (open_l <= stop_l) | (low_l <= stop_l)
    tp1_hit = ~np.isnan(tp1) & (high_l >= tp1 * sgn)
    tp2_hit = ~np.isnan(tp2) & (high_l >= tp2 * sgn)
    partial = has & ~expired & ~stopped & tp1_hit & ~tp2_hit & (rules.tp1_close_fraction < 1.0)
    be = rules.breakeven_after_tp1 & (fill * sgn > stop_l)
    stop2_l = np.where(be, fill * sgn, stop_l)
    reason2_trailing = q1.trailing & ~be
    best2_l = np.maximum(q1.best_price * sgn, high_l)
    if rules.trailing_mode is not None:
        best_real = best2_l * sgn
        if rules.trailing_mode == "atr":
            dist = rules.trailing_atr_mult * atr
            trail_real = np.where(is_long, best_real - dist, best_real + dist)
        else:
            trail_real = np.where(
                is_long, best_real * (1.0 - rules.trailing_pct), best_real * (1.0 + rules.trailing_pct)
            )
        trail_l = trail_real * sgn
        on = (best2_l - fill * sgn) >= rules.trailing_activation_r * np.abs(fill - stop)
        raised = on & (trail_l > stop2_l)
        stop2_l = np.where(raised, trail_l, stop2_l)
        reason2_trailing = reason2_trailing | raised
    p = np.flatnonzero(partial)
    q2 = scan_quiet_bars(
        ts=ts,
        open=op,
        high=hi,
        low=lo,
        start=k1[p] + 1,
        end=ends[p],
        long=is_long[p],
        entry=fill[p],
        stop=stop2_l[p] * sgn[p],
        initial_stop=stop[p],
        tp1=np.full(p.size, np.nan),
        tp2=tp2[p],
        best=best2_l[p] * sgn[p],
        atr=atr[p],
        opened_ts=ts[e[p]],
        rules=rules,
    )
    phase2 = {int(c): j for j, c in enumerate(p)}

    fund_rates_cache: dict[int, float] = {}
    paths: list[_Path] = []
    last_exit = -1
    for c in range(m):
        ec = int(e[c])
        if ec <= last_exit:
            counters["symbol_busy"] += 1
            continue
        side = "long" if is_long[c] else "short"
        t1 = None if math.isnan(tp1[c]) else float(tp1[c])
        t2 = None if math.isnan(tp2[c]) else float(tp2[c])
        state = PositionState.open(
            side=side,
            entry=float(fill[c]),
            stop=float(stop[c]),
            tp1=t1,
            tp2=t2,
            quantity=1.0,
            opened_ts=int(ts[ec]),
            atr=float(atr[c]),
        )
        fills: list[tuple[int, int, str, float, float]] = []
        k = int(k1[c])
        qs = (q1.best_price[c], q1.stop[c], q1.trailing[c])
        while True:
            if k < 0:  # never exits inside the data: close at the last close
                fills.append((n - 1, int(ts[n - 1]), "end", float(cl[n - 1]), state.remaining))
                exit_bar = n - 1
                break
            state = state.evolve(
                best_price=float(qs[0]),
                stop=float(qs[1]),
                stop_reason="trailing" if qs[2] else state.stop_reason,
            )
            state, events = step(
                state,
                ts=int(ts[k]),
                open=float(op[k]),
                high=float(hi[k]),
                low=float(lo[k]),
                close=float(cl[k]),
                rules=rules,
            )
            fills.extend((k, int(ts[k]), ev.reason, ev.price, ev.quantity) for ev in events)
            if not state.is_open:
                exit_bar = k
                break
            j = phase2.get(c)
            sgn_c = float(sgn[c])
            if (
                j is not None
                and k == int(k1[c])
                and state.stop == float(stop2_l[c] * sgn_c)
                and state.best_price == float(best2_l[c] * sgn_c)
                and (state.stop_reason == "trailing") == bool(reason2_trailing[c])
            ):
                k = int(q2.bar[j])
                qs = (q2.best_price[j], q2.stop[j], q2.trailing[j])
            else:  # prediction missed (should not happen): scan this one position from the next candle
                q = scan_quiet_bars(
                    ts=ts,
                    open=op,
                    high=hi,
                    low=lo,
                    start=np.array([k + 1]),
                    end=np.array([n]),
                    long=np.array([is_long[c]]),
                    entry=np.array([state.entry]),
                    stop=np.array([state.stop]),
                    initial_stop=np.array([state.initial_stop]),
                    tp1=np.array([np.nan if state.tp1_done or state.tp1 is None else state.tp1]),
                    tp2=np.array([np.nan if state.tp2 is None else state.tp2]),
                    best=np.array([state.best_price]),
                    atr=np.array([state.atr]),
                    opened_ts=np.array([state.opened_ts]),
                    rules=rules,
                )
                k = int(q.bar[0])
                qs = (q.best_price[0], q.stop[0], q.trailing[0])
        last_exit = exit_bar
        # funding settlements T with entry_ts < T <= exit candle open time
        entry_ts, exit_ts = int(ts[ec]), int(ts[exit_bar])
        first_t = (entry_ts // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
        fund: list[tuple[int, int, float, float, float]] = []
        if first_t <= exit_ts:
            tp1_bar = next((f[0] for f in fills if f[2] == "tp1"), None)
            tp1_frac = next((f[4] for f in fills if f[2] == "tp1"), 0.0)
            times = list(range(first_t, exit_ts + 1, FUNDING_PERIOD_MS))
            if funding is not None:
                missing = [t for t in times if t not in fund_rates_cache]
                if missing:
                    rates = _funding_rates(np.array(missing, dtype=np.int64), funding, config.funding_rate_8h)
                    fund_rates_cache.update(zip(missing, rates.tolist(), strict=True))
            for t in times:
                # first candle with open time >= t: on a regular grid it is found by arithmetic, else searched
                b = ec + (t - entry_ts) // SIGNAL_TIMEFRAME_MS
                if b >= n or ts_list_get(ts, b) != t:
                    b = int(np.searchsorted(ts, t, side="left"))
                open_frac = 1.0 if (tp1_bar is None or b <= tp1_bar) else 1.0 - tp1_frac
                rate = fund_rates_cache[t] if funding is not None else config.funding_rate_8h
                fund.append((b, int(ts[b]), float(op[b]), open_frac, rate))
        paths.append(
            _Path(
                symbol=symbol,
                side=side,
                signal_ts=int(ts[idx[c]]),
                entry_bar=ec,
                entry_ts=entry_ts,
                entry_price=float(fill[c]),
                stop=float(stop[c]),
                tp1=t1,
                tp2=t2,
                exit_bar=exit_bar,
                fills=tuple(fills),
                funding=tuple(fund),
            )
        )
    return paths, counters


# ---- account phase: sizing in time order, PnL, equity ------------------------------------------------------------


def fill_price(path_side: str, reason: str, price: float, slippage: float) -> float:
    """Exit fill price: targets fill at their level, the rest are taker fills with slippage."""
    if reason in TAKER_REASONS:
        return slipped_price(price=price, side=path_side, slippage=slippage, opening=False)
    return price


def size_trade(balance: float, entry: float, stop: float, symbol: str, config: BacktestConfig) -> float:
    market = (config.markets or {}).get(symbol)
    qty = position_quantity(
        balance=Decimal(balance),
        entry=Decimal(entry),
        stop=Decimal(stop),
        mode=config.sizing_mode,
        pct=Decimal(config.sizing_pct),
        leverage=Decimal(config.leverage),
        max_leverage=Decimal(config.max_leverage),
        market=market,
        on_below_minimum="zero",
    )
    return float(qty)


def trade_from_path(path: _Path, qty: float, config: BacktestConfig) -> tuple[Trade, list[tuple[int, float]]]:
    """Money for one sized path: the Trade and its cash flows ``(candle ts, amount)``."""
    flows: list[tuple[int, float]] = []
    entry_fee = fee_of(price=path.entry_price, quantity=qty, rate=config.fee_taker)
    flows.append((path.entry_ts, -entry_fee))
    gross = 0.0
    fees = entry_fee
    fills = []
    for _bar, ts, reason, price, frac in path.fills:
        px = fill_price(path.side, reason, price, config.slippage)
        q = qty * frac
        rate = config.fee_maker if (reason in ("tp1", "tp2") and config.targets_as_maker) else config.fee_taker
        g = price_pnl(side=path.side, entry=path.entry_price, exit=px, quantity=q)
        f = fee_of(price=px, quantity=q, rate=rate)
        gross += g
        fees += f
        flows.append((ts, g - f))
        fills.append(Fill(ts, reason, px, q))
    funding = 0.0
    for _bar, ts, mark, open_frac, rate in path.funding:
        paid = funding_payment(side=path.side, mark=mark, quantity=qty * open_frac, rate=rate)
        funding += paid
        flows.append((ts, -paid))
    net = gross - fees - funding
    closed = sum(f.quantity for f in fills)
    exit_price = sum(f.price * f.quantity for f in fills) / closed
    trade = Trade(
        symbol=path.symbol,
        side=path.side,
        signal_ts=path.signal_ts,
        entry_ts=path.entry_ts,
        entry_price=path.entry_price,
        quantity=qty,
        stop=path.stop,
        tp1=path.tp1,
        tp2=path.tp2,
        exit_ts=fills[-1].ts,
        exit_price=exit_price,
        reason=fills[-1].reason,
        reasons=tuple(f.reason for f in fills),
        fills=tuple(fills),
        gross_pnl=gross,
        fees=fees,
        funding=funding,
        net_pnl=net,
        r_multiple=r_multiple(pnl=net, entry=path.entry_price, stop=path.stop, quantity=qty),
    )
    return trade, flows


@dataclass
class BacktestResult:
    trades: list[Trade]
    equity_ts: np.ndarray
    equity: np.ndarray
    exposure: float
    initial_balance: float
    counters: dict[str, int]
    symbols: tuple[str, ...]

    def trades_frame(self) -> pd.DataFrame:
        columns = [f.name for f in dataclasses.fields(Trade) if f.name != "fills"]
        rows = [{c: getattr(t, c) for c in columns} for t in self.trades]
        return pd.DataFrame(rows, columns=columns)

    def metrics(self) -> dict[str, Any]:
        return metrics_mod.compute_metrics(
            self.trades_frame(),
            self.equity_ts,
            self.equity,
            initial_balance=self.initial_balance,
            exposure=self.exposure,
        )

    def per_symbol(self) -> pd.DataFrame:
        return metrics_mod.per_symbol_table(self.trades_frame())

    def per_month(self) -> pd.DataFrame:
        return metrics_mod.per_month_table(self.trades_frame())

    def equity_png(self, title: str = "Backtest equity") -> bytes:
        from engine.plots import equity_drawdown_png  # matplotlib: loaded only when a chart is drawn

        return equity_drawdown_png(self.equity_ts, self.equity, title=title, initial_balance=self.initial_balance)


_WORKER: dict[str, Any] = {}


def _worker_init(payload: dict[str, Any]) -> None:
    _WORKER.clear()
    _WORKER.update(payload)


def _worker_start(payload: dict[str, Any]) -> None:
    # Everything inherited from the parent moves to the collector's permanent generation first (a list splice, no
    # object is touched), so this worker's collections never write to, and copy, the pages the parent's data lives on.
    gc.freeze()
    _worker_init(payload)


def _worker_pool(processes: int, payload: dict[str, Any]) -> ProcessPoolExecutor:
    """Forked workers holding ``payload``."""
    return ProcessPoolExecutor(processes, initializer=_worker_start, initargs=(payload,))


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # inspecting the loaded libraries costs milliseconds in a process that has loaded many: done once
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """The NumPy fallback of the indicators multiplies small matrices: BLAS threads only contend with each other
    (and with the other worker processes) there, so the per-symbol work runs single-threaded and parallelism is
    across symbols. Entered once per run (or per batch of symbols in a worker); the compiled loops use no BLAS."""
    if compiled.enabled():
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _symbol_paths(payload: Mapping[str, Any], symbol: str) -> tuple[list[_Path], dict[str, int]]:
    return symbol_paths(
        symbol,
        *payload["prepared"][symbol],
        payload["params"],
        payload["config"],
        start_ms=payload["start_ms"],
        funding=payload["funding"].get(symbol),
        signal_cache=payload["signal_cache"],
    )


def _warm_up_compiled(payload: Mapping[str, Any]) -> None:
    """Compile (or load from numba's cache) the compiled loops in this process before it forks its workers, which
    then inherit them instead of each loading them again; the first symbol's own arrays give the same signatures."""
    if compiled.enabled():
        first = next(iter(payload["prepared"]))
        with single_threaded_blas():
            _symbol_paths(payload, first)


def _worker_paths(symbols: Sequence[str]) -> list[tuple[list[_Path], dict[str, int]]]:
    with single_threaded_blas():
        return [_symbol_paths(_WORKER, s) for s in symbols]


def _check_inputs(data: Mapping[str, SymbolData], symbols: Sequence[str] | None, params, config) -> list[str]:
    params.validate()
    config.validate()
    if symbols is None:
        symbols = list(data)
    if not symbols:
        raise InvalidParameters("no symbols to backtest")
    unknown = [s for s in symbols if s not in data]
    if unknown:
        raise UnknownSymbol(f"no candles for {', '.join(unknown)}; known symbols: {', '.join(sorted(data)) or 'none'}")
    return list(symbols)


def run_backtest(
    data: Mapping[str, SymbolData],
    params: StrategyParams | None = None,
    config: BacktestConfig | None = None,
    *,
    symbols: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    funding: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    processes: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    return _run_backtest(
        data,
        params,
        config,
        symbols=symbols,
        start_ms=start_ms,
        end_ms=end_ms,
        funding=funding,
        processes=processes,
        progress=progress,
        signal_cache=None,
    )


def _run_backtest(
    data: Mapping[str, SymbolData],
    params: StrategyParams | None,
    config: BacktestConfig | None,
    *,
    symbols: Sequence[str] | None,
    start_ms: int | None,
    end_ms: int | None,
    funding: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    processes: int,
    progress: Callable[[int, int], None] | None,
    signal_cache: dict[Any, _Candidates] | None,
) -> BacktestResult:
    """``run_backtest``; ``signal_cache`` (a sweep's, one per worker process: same data, same range) keeps each
    symbol's confirmed signals per ``StrategyParams``, so combinations that differ only in exits, fees or sizing
    compute them once."""
    params = params or StrategyParams()
    config = config or BacktestConfig()
    symbols = _check_inputs(data, symbols, params, config)
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise InvalidParameters(f"empty range: start {start_ms} >= end {end_ms}")
    needed = bars_needed(params) + 1
    prepared: dict[str, tuple[Candles, Candles]] = {}
    for s in symbols:
        c15, c1h = _prepare(data[s][0], data[s][1], end_ms)
        if len(c15) == 0 or (start_ms is not None and c15.ts[-1] < start_ms):
            raise InsufficientData(f"{s}: no 15m candles in the requested range")
        if len(c15) < needed:
            raise InsufficientData(f"{s}: {len(c15)} 15m candles, the strategy needs at least {needed}")
        if np.any(np.diff(c15.ts) <= 0):
            raise InsufficientData(f"{s}: 15m candle timestamps are not strictly increasing (duplicates?)")
        prepared[s] = (c15, c1h)
    funding = funding or {}

    payload = {
        "prepared": prepared,
        "params": params,
        "config": config,
        "start_ms": start_ms,
        "funding": funding,
        "signal_cache": signal_cache if processes == 1 else None,
    }
    processes = max(1, min(processes, len(symbols)))
    by_symbol: dict[str, tuple[list[_Path], dict[str, int]]] = {}
    if processes == 1:
        with single_threaded_blas():
            for done, s in enumerate(symbols, start=1):
                by_symbol[s] = _symbol_paths(payload, s)
                if progress is not None:
                    progress(done, len(symbols))
    else:
        _warm_up_compiled(payload)
        # a few batches per process: each task's overhead is paid per batch, and the load still balances
        batches = [list(b) for b in np.array_split(np.array(symbols, dtype=object), min(len(symbols), 4 * processes))]
        with _worker_pool(processes, payload) as pool:
            futures = {pool.submit(_worker_paths, batch): batch for batch in batches}
            done = 0
            for future in as_completed(futures):
                for s, paths in zip(futures[future], future.result(), strict=True):
                    by_symbol[s] = paths
                    done += 1
                    if progress is not None:
                        progress(done, len(symbols))
    results = [by_symbol[s] for s in symbols]

    counters = {"signals": 0, "levels_crossed_at_open": 0, "symbol_busy": 0, "below_minimum": 0}
    all_paths: list[_Path] = []
    for paths, cnt in results:
        all_paths.extend(paths)
        for key, value in cnt.items():
            counters[key] += value
    order = {s: i for i, s in enumerate(symbols)}
    all_paths.sort(key=lambda p: (p.entry_ts, order[p.symbol]))

    # sizing in time order on the balance of cash flows booked before the entry candle
    balance = config.initial_balance
    pending: list[tuple[int, int, float]] = []
    seq = itertools.count()
    trades: list[Trade] = []
    sized: list[tuple[_Path, Trade, list[tuple[int, float]]]] = []
    for path in all_paths:
        while pending and pending[0][0] < path.entry_ts:
            balance += heapq.heappop(pending)[2]
        qty = size_trade(balance, path.entry_price, path.stop, path.symbol, config) if balance > 0 else 0.0
        if qty <= 0:
            counters["below_minimum"] += 1
            continue
        trade, flows = trade_from_path(path, qty, config)
        for ts_, amount in flows:
            heapq.heappush(pending, (ts_, next(seq), amount))
        trades.append(trade)
        sized.append((path, trade, flows))

    equity_ts, equity, exposure = _equity_curve(prepared, symbols, sized, config.initial_balance)
    return BacktestResult(
        trades=trades,
        equity_ts=equity_ts,
        equity=equity,
        exposure=exposure,
        initial_balance=config.initial_balance,
        counters=counters,
        symbols=tuple(symbols),
    )


def _union_grid(series: Sequence[np.ndarray]) -> np.ndarray:
    """Sorted union of the symbols' candle times. Identical arrays (symbols listed over the same span) count once;
    times on one 15m lattice are merged by marking a boolean array (linear), others by sorting."""
    distinct: dict[tuple[int, int, int, bytes], np.ndarray] = {}
    for ts in series:
        if len(ts):
            distinct.setdefault((len(ts), int(ts[0]), int(ts[-1]), ts.tobytes()), ts)
    arrays = list(distinct.values())
    if len(arrays) <= 1:
        return np.asarray(arrays[0] if arrays else series[0])
    merged = np.concatenate(arrays)
    low, high = int(merged.min()), int(merged.max())
    span = (high - low) // SIGNAL_TIMEFRAME_MS + 1
    if span <= 4 * len(merged) + 1024 and not np.any((merged - low) % SIGNAL_TIMEFRAME_MS):
        present = np.zeros(span, dtype=bool)
        present[(merged - low) // SIGNAL_TIMEFRAME_MS] = True
        return low + SIGNAL_TIMEFRAME_MS * np.flatnonzero(present).astype(np.int64)
    merged.sort(kind="stable")
    return merged[np.r_[True, merged[1:] != merged[:-1]]]


def _equity_curve(
    prepared: Mapping[str, tuple[Candles, Candles]],
    symbols: Sequence[str],
    sized: Sequence[tuple[_Path, Trade, list[tuple[int, float]]]],
    initial_balance: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Equity at each close of the union grid = initial + cash flows booked up to that candle + unrealised PnL.

    A trade's unrealised PnL at a candle ``k`` from its entry to its exit candle is ``close[k] * a - b`` (``a``: the
    signed quantity open at that close, ``b``: ``a`` times the entry price; both 0 at the exit candle's close); it
    carries forward on the grid until the symbol's next candle. Only the candles of open trades are visited: their
    changes are added onto the grid at once and summed along it."""
    grid = _union_grid([prepared[s][0].ts for s in symbols])
    g = len(grid)
    flow_ts: list[int] = []
    flow_amt: list[float] = []
    closes: list[np.ndarray] = []
    times: list[np.ndarray] = []
    seg_len: list[int] = []
    seg_a: list[float] = []
    seg_b: list[float] = []
    busy_from: list[int] = []
    busy_to: list[int] = []
    for path, trade, flows in sized:
        for ts_, amount in flows:
            flow_ts.append(ts_)
            flow_amt.append(amount)
        c15 = prepared[path.symbol][0]
        closes.append(c15.close[path.entry_bar : path.exit_bar + 1])
        times.append(c15.ts[path.entry_bar : path.exit_bar + 1])
        sign = 1.0 if path.side == "long" else -1.0
        open_qty = trade.quantity
        start = path.entry_bar
        for fill_row, f in zip(path.fills, trade.fills, strict=True):
            bar = fill_row[0]
            # the quantity open at the close of candles [start, bar); a fill in `bar` reduces it from there on
            seg_len.append(bar - start)
            seg_a.append(sign * open_qty)
            seg_b.append(sign * open_qty * path.entry_price)
            open_qty -= f.quantity
            start = bar
        seg_len.append(1)  # the exit candle: nothing open at its close
        seg_a.append(0.0)
        seg_b.append(0.0)
        busy_from.append(path.entry_ts)
        busy_to.append(trade.exit_ts)
    cash = np.zeros(g)
    unreal = np.zeros(g)
    exposure = 0.0
    if sized:
        cash = np.bincount(np.searchsorted(grid, np.array(flow_ts, dtype=np.int64)), np.array(flow_amt), g)
        lengths = np.array(seg_len, dtype=np.int64)
        value = np.concatenate(closes) * np.repeat(np.array(seg_a), lengths) - np.repeat(np.array(seg_b), lengths)
        # every trade ends on a 0, so the changes of consecutive trades chain without a reset
        change = np.diff(value, prepend=0.0)
        unreal = np.cumsum(np.bincount(np.searchsorted(grid, np.concatenate(times)), change, g))
        busy = np.bincount(np.searchsorted(grid, np.array(busy_from, dtype=np.int64)), minlength=g + 1)
        busy -= np.bincount(np.searchsorted(grid, np.array(busy_to, dtype=np.int64)) + 1, minlength=g + 1)
        exposure = float((np.cumsum(busy[:-1]) > 0).mean())
    return grid, initial_balance + np.cumsum(cash) + unreal, exposure


# ---- parameter sweep --------------------------------------------------------------------------------------------

LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_pct", "worst_trade_abs", "fees", "funding"})


class SweepRow(NamedTuple):
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    error: str | None


def _apply_combo(params: StrategyParams, config: BacktestConfig, combo: Mapping[str, Any]):
    p_fields = {f.name for f in dataclasses.fields(StrategyParams)}
    c_fields = {f.name for f in dataclasses.fields(BacktestConfig)}
    e_fields = {f.name for f in dataclasses.fields(ExitRules)}
    p_kw, c_kw, e_kw = {}, {}, {}
    for name, value in combo.items():
        if name.startswith("exit.") and name[5:] in e_fields:
            e_kw[name[5:]] = value
        elif name in p_fields:
            p_kw[name] = value
        elif name in c_fields:
            c_kw[name] = value
        else:
            raise InvalidParameters(f"unknown sweep parameter {name!r}")
    if e_kw:
        c_kw["exit_rules"] = dataclasses.replace(config.exit_rules, **e_kw)
    return dataclasses.replace(params, **p_kw), dataclasses.replace(config, **c_kw)


def _sweep_one(combo: dict[str, Any]) -> SweepRow:
    w = _WORKER
    try:
        params, config = _apply_combo(w["params"], w["config"], combo)
        run_kwargs = {
            "symbols": None,
            "start_ms": None,
            "end_ms": None,
            "funding": None,
            "progress": None,
            **w["run_kwargs"],
            "processes": 1,
            "signal_cache": w["signal_cache"],
        }
        result = _run_backtest(w["data"], params, config, **run_kwargs)
        return SweepRow(combo, result.metrics(), None)
    except InvalidParameters as exc:
        return SweepRow(combo, None, str(exc))


def _sweep_many(combos: list[dict[str, Any]]) -> list[SweepRow]:
    return [_sweep_one(c) for c in combos]


def _sweep_tasks(strategy_keys: Sequence[Any], processes: int) -> list[list[int]]:
    """Combination indices per task: combinations with the same strategy parameters go together (one worker computes
    their signals once), the largest tasks are halved until there are two per process (or nothing left to halve)."""
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(strategy_keys):
        groups.setdefault(key, []).append(i)
    tasks = list(groups.values())
    while len(tasks) < 2 * processes:
        largest = max(tasks, key=len)
        if len(largest) < 2:
            break
        tasks.remove(largest)
        tasks += [largest[: len(largest) // 2], largest[len(largest) // 2 :]]
    return sorted(tasks, key=len, reverse=True)


def sweep(
    data: Mapping[str, SymbolData],
    grid: Mapping[str, Sequence[Any]],
    metric: str = "net_pnl",
    processes: int = 2,
    *,
    params: StrategyParams | None = None,
    config: BacktestConfig | None = None,
    descending: bool | None = None,
    **run_kwargs: Any,
) -> list[SweepRow]:
    """Backtest every combination of ``grid`` in a process pool; rank by ``metric`` (see module docstring)."""
    params = params or StrategyParams()
    config = config or BacktestConfig()
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise InvalidParameters("the sweep grid needs at least one value per parameter")
    valid_metrics = metrics_mod.compute_metrics(
        pd.DataFrame(columns=["net_pnl"]), np.array([0]), np.array([1.0]), initial_balance=1.0
    )
    if metric not in valid_metrics:
        raise InvalidParameters(f"unknown metric {metric!r}; choose one of {', '.join(valid_metrics)}")
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]
    # unknown names fail fast, before any process starts
    strategy_keys = [_apply_combo(params, config, combo)[0] for combo in combos]
    _check_inputs(data, run_kwargs.get("symbols"), params, config)
    payload = {"data": data, "params": params, "config": config, "run_kwargs": run_kwargs, "signal_cache": {}}
    if processes <= 1:
        _worker_init(payload)
        rows = [_sweep_one(c) for c in combos]
        _WORKER.clear()
    else:
        if compiled.enabled():  # compiled once here, inherited by the forked workers
            first = (run_kwargs.get("symbols") or list(data))[:1]
            run_backtest(data, params, config, **{**run_kwargs, "symbols": first, "processes": 1})
        tasks = _sweep_tasks(strategy_keys, processes)
        rows_by_index: dict[int, SweepRow] = {}
        with _worker_pool(processes, payload) as pool:
            for task, task_rows in zip(
                tasks, pool.map(_sweep_many, [[combos[i] for i in t] for t in tasks]), strict=True
            ):
                rows_by_index.update(zip(task, task_rows, strict=True))
        rows = [rows_by_index[i] for i in range(len(combos))]
    if descending is None:
        descending = metric not in LOWER_IS_BETTER

    def key(row: SweepRow) -> tuple[int, float]:
        value = None if row.metrics is None else row.metrics.get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0.0)
        return (0, -value if descending else value)

    return sorted(rows, key=key)
