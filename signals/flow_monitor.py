"""The multi-exchange spot order-flow monitor: one cycle fetches, scores, filters and turns alerts into flow signals.

``flow_cycle`` (called every minute through ``flow_monitor_run`` by the beat task
``signals.tasks_flow.flow_monitor_cycle``):

1. claims the cycle in the shared cache (``cache.add``: two workers never run the same cycle, and a running cycle
   holds a lock so cycles never overlap);
2. fetches trades and books from the ``SpotFlowSource`` (an exchange that fails is skipped, see ``flow_sources``);
3. folds the trades of CLOSED minutes into per-(exchange, symbol) one-minute buy/sell notional buckets kept in the
   cache, so a 15m window does not depend on one fetch reaching 15 minutes back (a venue serves only its last N
   trades). A bucket seen again keeps the more complete version (the larger notional); the oldest minute of a list
   cut by the venue's limit is extrapolated from the part seen (``minute_buckets``) and only fills a gap;
4. per window (1m/5m/15m, ``FLOW_WINDOWS``) scores the last closed window with ``engine.flow.aggregate_pressure``
   (volume-weighted across exchanges; the book imbalance is the current snapshot) and runs the window's
   ``engine.flow.StabilityFilter`` whose state lives in the cache (Redis when configured, shared by all workers);
5. each alert passing the per-symbol cooldown (across windows) becomes a ``Signal(source="flow")`` on the USDT
   perpetual (``BTC/USDT`` → ``BTC/USDT:USDT``) through ``signals.services.signal_create``: entry = last price,
   stop/targets from ATR of the perpetual's 15m candles with ``engine.strategy.StrategyParams``' multiples, risk
   level from ``engine.risk`` (the agreeing exchanges count as the confirmations).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.cache import BaseCache, caches

from engine import indicators
from engine.candles import timeframe_to_ms
from engine.flow import (
    FlowAlert,
    FlowParams,
    OrderBook,
    StabilityFilter,
    SymbolFlowState,
    SymbolPressure,
    Trades,
    aggregate_pressure,
)
from engine.risk import risk_level
from engine.strategy import SignalCandidate, StrategyParams
from signals.flow_sources import MINUTE_MS, FlowSnapshot, Pair, SpotFlowSource, perpetual_symbol

logger = logging.getLogger(__name__)

CACHE_PREFIX = "flow"
ATR_TIMEFRAME = "15m"
MIN_SAMPLE_MS = 5_000  # the least of a cut minute worth extrapolating
REWIND_MS = 5 * MINUTE_MS  # the clock moving back further than this is a new replay


@dataclass(frozen=True)
class FlowMonitorParams:
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
    windows: tuple[str, ...] = ("1m", "5m", "15m")
    flow: FlowParams = field(default_factory=FlowParams)  # window_ms is replaced per window
    strategy: StrategyParams = field(default_factory=StrategyParams)  # ATR period and stop/target multiples
    cooldown_ms: int = 30 * MINUTE_MS  # per symbol, across windows
    signal_expiry: timedelta = timedelta(hours=2)
    lock_seconds: int = 120

    def window_ms(self, window: str) -> int:
        return timeframe_to_ms(window)

    @property
    def lookback_ms(self) -> int:
        return max(self.window_ms(w) for w in self.windows) + 2 * MINUTE_MS

    def flow_params(self, window: str) -> FlowParams:
        return replace(self.flow, window_ms=self.window_ms(window), cooldown_ms=self.cooldown_ms)

    @classmethod
    def from_settings(cls) -> FlowMonitorParams:
        params = cls(
            symbols=tuple(settings.FLOW_SYMBOLS),
            windows=tuple(settings.FLOW_WINDOWS),
            flow=FlowParams(
                depth_pct=settings.FLOW_BOOK_DEPTH_PCT,
                taker_weight=settings.FLOW_TAKER_WEIGHT,
                threshold=settings.FLOW_THRESHOLD,
                min_agreeing=settings.FLOW_MIN_AGREEING,
                stable_windows=settings.FLOW_STABLE_WINDOWS,
            ),
            cooldown_ms=settings.FLOW_COOLDOWN_MINUTES * MINUTE_MS,
            signal_expiry=timedelta(hours=settings.FLOW_SIGNAL_EXPIRY_HOURS),
        )
        params.validate()
        return params

    def validate(self) -> FlowMonitorParams:
        if not self.symbols or not self.windows:
            raise ValueError("the flow monitor needs at least one symbol and one window")
        for window in self.windows:
            if self.window_ms(window) % MINUTE_MS:
                raise ValueError(f"flow window {window} is not a whole number of minutes")
            self.flow_params(window).validate()
        return self


@dataclass
class FlowCycleResult:
    ran: bool
    now_ms: int
    pressures: dict[str, dict[str, SymbolPressure]] = field(default_factory=dict)  # window -> symbol -> pressure
    alerts: list[tuple[str, FlowAlert]] = field(default_factory=list)  # (window, alert) past the cooldown
    signal_ids: list[int] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped_windows: list[str] = field(default_factory=list)  # finer than the source's resolution

    def summary(self) -> dict:
        return {
            "ran": self.ran,
            "now_ms": self.now_ms,
            "skipped_windows": self.skipped_windows,
            "alerts": [f"{w}:{a.symbol}:{a.side}" for w, a in self.alerts],
            "signal_ids": self.signal_ids,
            "failures": len(self.failures),
        }


# -- shared state in the cache ---------------------------------------------------------------------------------------
class FlowStateStore:
    """Everything the monitor remembers between cycles, in the Django cache (Redis: shared by every worker)."""

    def __init__(self, cache: BaseCache | None = None, *, prefix: str = CACHE_PREFIX):
        self.cache = cache if cache is not None else caches["default"]
        self.prefix = prefix

    def key(self, *parts: object) -> str:
        return ":".join((self.prefix, *(str(p) for p in parts)))

    # locks ------------------------------------------------------------------------------------------------------
    def claim_cycle(self, now_ms: int, *, lock_seconds: int) -> str | None:
        """A token when this process may run the cycle at ``now_ms`` (once per minute, never two at a time)."""
        token = uuid.uuid4().hex
        if not self.cache.add(self.key("lock"), token, timeout=lock_seconds):
            return None  # another cycle is still running
        epoch = self.cache.get(self.key("epoch")) or 0
        if not self.cache.add(self.key("cycle", epoch, now_ms // MINUTE_MS), 1, timeout=lock_seconds * 2):
            self.release(token)  # this minute's cycle already ran
            return None
        return token

    def release(self, token: str) -> None:
        if self.cache.get(self.key("lock")) == token:
            self.cache.delete(self.key("lock"))

    # minute buckets ---------------------------------------------------------------------------------------------
    def buckets(self, pair: Pair) -> dict[int, tuple[float, float]]:
        raw = self.cache.get(self.key("buckets", *pair)) or {}
        return {int(minute): (float(v[0]), float(v[1])) for minute, v in raw.items()}

    def buckets_many(self, pairs: set[Pair]) -> dict[Pair, dict[int, tuple[float, float]]]:
        """The buckets of many pairs in one round trip (Redis MGET)."""
        keys = {self.key("buckets", *pair): pair for pair in pairs}
        raw = self.cache.get_many(list(keys))
        return {
            keys[key]: {int(minute): (float(v[0]), float(v[1])) for minute, v in value.items()}
            for key, value in raw.items()
        }

    def save_buckets_many(self, buckets: Mapping[Pair, Mapping[int, tuple[float, float]]], *, ttl_seconds: int) -> None:
        self.cache.set_many(
            {
                self.key("buckets", *pair): {str(m): list(v) for m, v in value.items()}
                for pair, value in buckets.items()
            },
            timeout=ttl_seconds,
        )

    def pairs(self) -> set[Pair]:
        return {tuple(p) for p in (self.cache.get(self.key("pairs")) or [])}

    def save_pairs(self, pairs: set[Pair], *, ttl_seconds: int) -> None:
        self.cache.set(self.key("pairs"), sorted(list(p) for p in pairs), timeout=ttl_seconds)

    # stability filter and cooldown -----------------------------------------------------------------------------
    def stability_filter(self, window: str, params: FlowParams) -> StabilityFilter:
        raw = self.cache.get(self.key("filter", window)) or {}
        return StabilityFilter(params=params, states={s: SymbolFlowState(**state) for s, state in raw.items()})

    def save_stability_filter(self, window: str, stability: StabilityFilter) -> None:
        self.cache.set(self.key("filter", window), {s: asdict(st) for s, st in stability.states.items()}, timeout=None)

    def last_signal_ms(self) -> dict[str, int]:
        return dict(self.cache.get(self.key("last_signal")) or {})

    def save_last_signal_ms(self, values: Mapping[str, int]) -> None:
        self.cache.set(self.key("last_signal"), dict(values), timeout=None)

    def clear(self, *, windows: Sequence[str]) -> None:
        """Forget all flow state (tests)."""
        self.forget_history(windows=windows)
        self.cache.delete_many([self.key("lock"), self.key("epoch")])

    def forget_history(self, *, windows: Sequence[str]) -> None:
        """Forget buckets, filter streaks, cooldowns and the clock (not the lock of the running cycle)."""
        keys = [self.key("last_signal"), self.key("pairs"), self.key("last_now")]
        keys += [self.key("buckets", *p) for p in self.pairs()]
        keys += [self.key("filter", w) for w in windows]
        self.cache.delete_many(keys)

    def rewind_if_the_clock_went_back(self, now_ms: int, *, windows: Sequence[str]) -> bool:
        """A new replay (the replay clock moved back more than ``REWIND_MS``) starts from a clean slate: otherwise the
        filters would ignore every "older" window and the cooldowns would block the whole new run. A new epoch also
        frees the per-minute cycle claims of the earlier run. Small differences (worker clocks) never count."""
        last = self.cache.get(self.key("last_now"))
        if last is None or now_ms >= int(last) - REWIND_MS:
            return False
        self.forget_history(windows=windows)
        self.cache.set(self.key("epoch"), (self.cache.get(self.key("epoch")) or 0) + 1, timeout=None)
        logger.info("flow: clock moved back from %s to %s (a new replay); flow state cleared", last, now_ms)
        return True

    def save_now(self, now_ms: int) -> None:
        last = self.cache.get(self.key("last_now"))
        if last is None or now_ms > int(last):
            self.cache.set(self.key("last_now"), now_ms, timeout=None)


# -- pure steps ------------------------------------------------------------------------------------------------------
def minute_buckets(
    trades: Trades, *, before_ms: int, extrapolate_first_minute: bool = False
) -> dict[int, tuple[float, float]]:
    """{minute open ms: (taker buy notional, taker sell notional)} of the closed minutes (``< before_ms``).

    ``extrapolate_first_minute``: the list was cut inside its oldest minute (a venue serves only its last N trades:
    okx and kucoin 100, binance and mexc 1000), so that minute was seen only from its first listed trade to its end.
    Its buy and sell notionals are scaled to the whole minute (its pressure unchanged, its volume weight estimated);
    with less than ``MIN_SAMPLE_MS`` of it seen, the minute is left out. Without this, a busy pair whose last N
    trades span less than a minute would never contribute at all."""
    if len(trades.ts) == 0:
        return {}
    minute = trades.ts // MINUTE_MS * MINUTE_MS
    notional = trades.price * trades.amount
    keep = trades.ts < before_ms
    scale_minute, scale = None, 1.0
    if extrapolate_first_minute:
        first = int(trades.ts.min())
        scale_minute = first // MINUTE_MS * MINUTE_MS
        seen_ms = scale_minute + MINUTE_MS - first
        if seen_ms < MIN_SAMPLE_MS:
            keep &= minute != scale_minute
        else:
            scale = MINUTE_MS / seen_ms
    keys, index = np.unique(minute[keep], return_inverse=True)
    buy = np.bincount(index, weights=np.where(trades.side[keep] > 0, notional[keep], 0.0), minlength=len(keys))
    sell = np.bincount(index, weights=np.where(trades.side[keep] < 0, notional[keep], 0.0), minlength=len(keys))
    factor = np.where(keys == scale_minute, scale, 1.0) if scale_minute is not None else np.ones(len(keys))
    return {int(k): (float(b * f), float(v * f)) for k, b, v, f in zip(keys, buy, sell, factor, strict=True)}


def merge_buckets(
    old: Mapping[int, tuple[float, float]],
    new: Mapping[int, tuple[float, float]],
    *,
    keep_from_ms: int,
    estimated: frozenset[int] | set[int] = frozenset(),
) -> dict[int, tuple[float, float]]:
    """Union by minute; a minute present in both keeps the version with the larger notional (the more complete
    fetch: a later fetch can only have lost the oldest trades of a closed minute, never gained new ones). A minute in
    ``estimated`` (extrapolated from part of it) only fills a gap, it never replaces a stored version."""
    merged = {m: v for m, v in old.items() if m >= keep_from_ms}
    for minute, value in new.items():
        if minute < keep_from_ms:
            continue
        current = merged.get(minute)
        if current is None or (minute not in estimated and sum(value) > sum(current)):
            merged[minute] = value
    return merged


def buckets_as_trades(buckets: Mapping[int, tuple[float, float]], *, start_ms: int, end_ms: int) -> Trades:
    """The buckets of [start, end) as two prints per minute (price 1, amount = notional) for ``aggregate_pressure``."""
    minutes = sorted(m for m in buckets if start_ms <= m < end_ms)
    ts = np.repeat(np.asarray(minutes, dtype=np.int64), 2)
    amount = np.asarray([x for m in minutes for x in buckets[m]], dtype=np.float64)
    side = np.tile(np.asarray([1, -1], dtype=np.int8), len(minutes))
    return Trades(ts=ts, price=np.ones(len(ts)), amount=amount, side=side)


def last_closed_window_end(now_ms: int, window_ms: int) -> int:
    return now_ms // window_ms * window_ms


# -- the cycle -------------------------------------------------------------------------------------------------------
def flow_cycle(
    *,
    now_ms: int,
    source: SpotFlowSource,
    params: FlowMonitorParams,
    market_data=None,
    cache: BaseCache | None = None,
) -> FlowCycleResult:
    """One monitor cycle at ``now_ms`` (the replay clock in replay mode). Returns what it saw and created."""
    params.validate()
    store = FlowStateStore(cache)
    store.rewind_if_the_clock_went_back(now_ms, windows=params.windows)
    token = store.claim_cycle(now_ms, lock_seconds=params.lock_seconds)
    if token is None:
        logger.info("flow cycle at %s already claimed by another worker; skipped", now_ms)
        return FlowCycleResult(ran=False, now_ms=now_ms)
    try:
        snapshot = source.fetch(symbols=params.symbols, now_ms=now_ms, lookback_ms=params.lookback_ms)
        result = FlowCycleResult(ran=True, now_ms=now_ms, failures=dict(snapshot.failures))
        pairs = _update_buckets(store, snapshot, now_ms=now_ms, params=params)
        last_signal = store.last_signal_ms()
        resolution_ms = int(getattr(source, "resolution_ms", MINUTE_MS))
        for window in params.windows:
            window_ms = params.window_ms(window)
            if window_ms < resolution_ms:
                # e.g. 1m windows over the replay proxy of 5m candles: five identical windows per candle would make
                # one candle look "stable" for 5 windows. Such windows are not scored at all.
                result.skipped_windows.append(window)
                continue
            end_ms = last_closed_window_end(now_ms, window_ms)
            flow_params = params.flow_params(window)
            inputs: dict[Pair, tuple[Trades, OrderBook | None]] = {}
            for pair, buckets in pairs.items():
                inputs[pair] = (
                    buckets_as_trades(buckets, start_ms=end_ms - window_ms, end_ms=end_ms),
                    snapshot.books.get(pair),
                )
            pressures = aggregate_pressure(inputs, end_ms=end_ms, params=flow_params)
            result.pressures[window] = pressures
            stability = store.stability_filter(window, flow_params)
            for symbol in params.symbols:
                pressure = pressures.get(symbol)
                if pressure is None or pressure.notional <= 0:
                    continue
                alert = stability.update(pressure, window_end_ms=end_ms)
                if alert is None:
                    continue
                previous = last_signal.get(symbol)
                if previous is not None and end_ms - previous < params.cooldown_ms:
                    logger.info("flow %s %s %s: in the symbol cooldown; no signal", window, symbol, alert.side)
                    continue
                last_signal[symbol] = end_ms
                result.alerts.append((window, alert))
                signal = flow_signal_create(
                    alert=alert, pressure=pressure, window=window, params=params, market_data=market_data
                )
                if signal is not None:
                    result.signal_ids.append(signal.pk)
            store.save_stability_filter(window, stability)
        store.save_last_signal_ms(last_signal)
        store.save_now(now_ms)
        return result
    finally:
        store.release(token)


def flow_monitor_run(*, source: SpotFlowSource | None = None, market_data=None) -> FlowCycleResult:
    """The periodic entry point (``signals.tasks_flow.flow_monitor_cycle``): parameters and source from settings,
    the clock of the market-data port (the replay clock in replay mode, the wall clock live)."""
    from signals.flow_sources import flow_source_from_settings
    from signals.market_data import get_market_data

    market_data = market_data if market_data is not None else get_market_data()
    return flow_cycle(
        now_ms=int(market_data.now_ms()),
        source=source if source is not None else flow_source_from_settings(),
        params=FlowMonitorParams.from_settings(),
        market_data=market_data,
    )


def _update_buckets(
    store: FlowStateStore, snapshot: FlowSnapshot, *, now_ms: int, params: FlowMonitorParams
) -> dict[Pair, dict[int, tuple[float, float]]]:
    keep_from = now_ms - params.lookback_ms
    ttl = params.lookback_ms // 1000 * 2 + 120
    closed_before = now_ms // MINUTE_MS * MINUTE_MS
    pairs = store.pairs() | set(snapshot.trades)
    stored = store.buckets_many(pairs)
    result: dict[Pair, dict[int, tuple[float, float]]] = {}
    changed: dict[Pair, dict[int, tuple[float, float]]] = {}
    for pair in pairs:
        old = stored.get(pair, {})
        trades = snapshot.trades.get(pair)
        if trades is None:
            merged = {m: v for m, v in old.items() if m >= keep_from}
        else:
            # a list that does not reach back past the lookback (or hit the fetch limit) was cut in its oldest minute
            cut = len(trades.ts) > 0 and (pair in snapshot.truncated or int(trades.ts.min()) >= keep_from)
            new = minute_buckets(trades, before_ms=closed_before, extrapolate_first_minute=cut)
            estimated = {int(trades.ts.min()) // MINUTE_MS * MINUTE_MS} if cut else set()
            merged = merge_buckets(old, new, keep_from_ms=keep_from, estimated=estimated)
            changed[pair] = merged
        if merged:
            result[pair] = merged
    store.save_buckets_many(changed, ttl_seconds=ttl)
    store.save_pairs(set(result), ttl_seconds=ttl)
    return result


def flow_signal_create(
    *, alert: FlowAlert, pressure: SymbolPressure, window: str, params: FlowMonitorParams, market_data=None
):
    """The ``Signal(source="flow")`` of an alert on the USDT perpetual, or ``None`` when it cannot or may not exist."""
    from signals import services
    from signals.market_data import MarketDataError, get_market_data

    market_data = market_data if market_data is not None else get_market_data()
    candidate = None
    try:
        candidate = flow_candidate(
            alert=alert, pressure=pressure, window=window, params=params, market_data=market_data
        )
    except MarketDataError as error:
        logger.warning("flow %s %s: no market data for the perpetual (%s); no signal", window, alert.symbol, error)
    if candidate is None:
        return None
    signal = services.signal_create(candidate=candidate, source="flow", expires_in=params.signal_expiry)
    if signal is None:
        logger.info(
            "flow %s %s %s: signal refused (muted, inactive or already open)", window, candidate.symbol, alert.side
        )
    return signal


def flow_candidate(
    *, alert: FlowAlert, pressure: SymbolPressure, window: str, params: FlowMonitorParams, market_data
) -> SignalCandidate | None:
    """Entry at the perpetual's last price; stop ``stop_atr_mult`` ATR(15m) away, targets at ``tp1_r``/``tp2_r`` R."""
    symbol = perpetual_symbol(alert.symbol)
    strategy = params.strategy
    candles = market_data.ohlcv(symbol, ATR_TIMEFRAME, strategy.atr_period * 10)
    if len(candles) <= strategy.atr_period:
        logger.warning(
            "flow %s: %d 15m candles, ATR(%d) needs more; no signal", symbol, len(candles), strategy.atr_period
        )
        return None
    atr = float(indicators.atr(candles.high, candles.low, candles.close, strategy.atr_period)[-1])
    entry = float(market_data.last_price(symbol))
    if not (math.isfinite(atr) and atr > 0 and math.isfinite(entry) and entry > 0):
        logger.warning("flow %s: unusable ATR %r or price %r; no signal", symbol, atr, entry)
        return None
    direction = 1 if alert.side == "long" else -1
    distance = strategy.stop_atr_mult * atr
    funding = market_data.funding_rate(symbol)
    funding_rate = float(funding) if funding is not None else None
    agreeing = _agreeing_exchanges(pressure)
    window_ms = params.window_ms(window)
    return SignalCandidate(
        symbol=symbol,
        side=alert.side,
        candle_ts=alert.window_end_ms - window_ms,
        entry=entry,
        stop=entry - direction * distance,
        tp1=entry + direction * strategy.tp1_r * distance,
        tp2=entry + direction * strategy.tp2_r * distance,
        atr=atr,
        risk_level=risk_level(
            atr_pct=100.0 * atr / entry,
            sr_distance_atr=None,
            confirmations=agreeing,
            funding_rate=funding_rate,
            side=alert.side,
        ),
        confirmations=tuple(agreeing),
        indicators={
            "flow_score": round(pressure.score, 4),
            "flow_agreeing": round(pressure.agreeing, 4),
            "flow_notional": round(pressure.notional, 2),
            "flow_window_ms": float(window_ms),
            **{f"flow_{exchange}": round(value, 4) for exchange, value in sorted(pressure.exchanges.items())},
        },
        timeframe=window,
        funding_rate=funding_rate,
    )


def _agreeing_exchanges(pressure: SymbolPressure) -> list[str]:
    sign = np.sign(pressure.score)
    return sorted(
        f"flow:{exchange}" for exchange, value in pressure.exchanges.items() if sign and np.sign(value) == sign
    )
