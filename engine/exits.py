"""Exit rules shared by the live position monitor and the backtester.

Public API
----------
``ExitRules``      frozen dataclass of the exit policy (TP1 partial close, break-even, trailing stop, expiry).
``PositionState``  frozen dataclass of one open position (prices are floats, quantities floats).
``PositionState.open(...)`` builds a fresh state (best price = entry, stop reason "sl").
``ExitEvent``      ``(reason, price, quantity)``; reason is one of ``EXIT_REASONS``.
``step(state, *, ts, open, high, low, close, rules) -> (PositionState, list[ExitEvent])``
                   applies the rules to ONE candle (or a tick: pass open=high=low=close=price).
``scan_quiet_bars(...)`` helper used by the backtester (a compiled loop, or vectorised NumPy without numba): for
                   many positions at once it finds the first
                   candle on which ``step`` would do anything else than track the best price/trailing stop, and the
                   state (best price, stop, stop reason) on arrival there. The backtester then calls ``step`` on that
                   candle, so every fill comes from ``step`` itself; ``engine/tests/test_exits.py`` proves that
                   skipping quiet candles this way equals applying ``step`` candle by candle.

Order of the checks inside one candle (the conservative convention, for longs; shorts mirror it)
---------------------------------------------------------------------------------------------------
1. Expiry: if ``ts >= opened_ts + expiry_seconds * 1000`` the whole remaining quantity closes at the candle's open.
2. Stop: if the open is at/through the stop (a gap) the stop fills at the OPEN (worse than the stop); otherwise if
   the low touches the stop it fills at the stop. The stop is checked BEFORE any target: when a stop and a target
   are both inside one candle we assume the stop came first. The exit reason is the kind of the stop in force:
   "sl" (initial), "breakeven" (moved to entry after TP1) or "trailing".
3. TP1: if the high reaches tp1 (and TP1 is not done) ``tp1_close_fraction`` of the ORIGINAL quantity closes at tp1
   (never better than the level, even on a gap). If ``breakeven_after_tp1`` the stop moves to the entry price.
4. TP2: if the high reaches tp2 the remaining quantity closes at tp2.
5. End of candle: the best price is updated with the candle's high, and the trailing stop (if enabled and the best
   price is at least ``trailing_activation_r`` R in profit, R = |entry - initial stop|) is raised to
   ``best - trailing_atr_mult * atr`` ("atr") or ``best * (1 - trailing_pct)`` ("pct"); stops only ever tighten.

Stops moved during a candle (break-even after TP1, trailing from the new best price) take effect from the NEXT
candle: we do not know whether the candle's low came before or after its high. A candle that reverses through the
moved stop is still handled pessimistically by rule 2 on the following candle (a gap through the stop fills at the
open).
Quantities are not rounded here; the live executor rounds at the edge with the market precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from engine import compiled
from engine.errors import InvalidParameters

EXIT_REASONS = ("sl", "tp1", "tp2", "trailing", "breakeven", "expiry")
TrailingMode = Literal["atr", "pct"] | None


@dataclass(frozen=True)
class ExitRules:
    tp1_close_fraction: float = 0.5
    breakeven_after_tp1: bool = True
    trailing_mode: TrailingMode = None
    trailing_atr_mult: float = 1.0
    trailing_pct: float = 0.01
    trailing_activation_r: float = 1.0
    expiry_seconds: int | None = None

    def validate(self) -> ExitRules:
        if not 0.0 < self.tp1_close_fraction <= 1.0:
            raise InvalidParameters(f"tp1_close_fraction must be in (0, 1], got {self.tp1_close_fraction}")
        if self.trailing_mode not in (None, "atr", "pct"):
            raise InvalidParameters(f"trailing_mode must be None, 'atr' or 'pct', got {self.trailing_mode!r}")
        if self.trailing_atr_mult <= 0:
            raise InvalidParameters(f"trailing_atr_mult must be > 0, got {self.trailing_atr_mult}")
        if not 0.0 < self.trailing_pct < 1.0:
            raise InvalidParameters(f"trailing_pct must be in (0, 1), got {self.trailing_pct}")
        if self.trailing_activation_r < 0:
            raise InvalidParameters(f"trailing_activation_r must be >= 0, got {self.trailing_activation_r}")
        if self.expiry_seconds is not None and self.expiry_seconds <= 0:
            raise InvalidParameters(f"expiry_seconds must be > 0 or None, got {self.expiry_seconds}")
        return self


class ExitEvent(NamedTuple):
    reason: str
    price: float
    quantity: float


@dataclass(frozen=True)
class PositionState:
    side: str  # "long" | "short"
    entry: float
    stop: float
    tp1: float | None
    tp2: float | None
    quantity: float
    remaining: float
    tp1_done: bool
    best_price: float
    opened_ts: int  # ms, open time of the entry candle
    atr: float
    initial_stop: float
    stop_reason: str = "sl"

    @classmethod
    def open(
        cls,
        *,
        side: str,
        entry: float,
        stop: float,
        tp1: float | None,
        tp2: float | None,
        quantity: float,
        opened_ts: int,
        atr: float,
    ) -> PositionState:
        if side not in ("long", "short"):
            raise InvalidParameters(f"side must be 'long' or 'short', got {side!r}")
        sign = 1.0 if side == "long" else -1.0
        if not (entry - stop) * sign > 0:
            raise InvalidParameters(f"{side} stop {stop} must be on the losing side of entry {entry}")
        for name, level in (("tp1", tp1), ("tp2", tp2)):
            if level is not None and not (level - entry) * sign > 0:
                raise InvalidParameters(f"{side} {name} {level} must be on the winning side of entry {entry}")
        if quantity <= 0:
            raise InvalidParameters(f"quantity must be > 0, got {quantity}")
        return cls(
            side=side,
            entry=entry,
            stop=stop,
            tp1=tp1,
            tp2=tp2,
            quantity=quantity,
            remaining=quantity,
            tp1_done=False,
            best_price=entry,
            opened_ts=opened_ts,
            atr=atr,
            initial_stop=stop,
        )

    def evolve(self, **changes) -> PositionState:
        """A copy with ``changes`` applied (``dataclasses.replace`` without its per-call overhead: this runs once
        per candle in the monitor and once per event in the backtester)."""
        new = object.__new__(PositionState)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @property
    def is_open(self) -> bool:
        return self.remaining > 0


def _trail_level(side_long: bool, best: float, atr: float, rules: ExitRules) -> float:
    if rules.trailing_mode == "atr":
        dist = rules.trailing_atr_mult * atr
        return best - dist if side_long else best + dist
    return best * (1.0 - rules.trailing_pct) if side_long else best * (1.0 + rules.trailing_pct)


def step(
    state: PositionState, *, ts: int, open: float, high: float, low: float, close: float, rules: ExitRules
) -> tuple[PositionState, list[ExitEvent]]:
    """Apply the exit rules to one candle; returns the new state and the fills (possibly none)."""
    if state.remaining <= 0:
        return state, []
    long = state.side == "long"
    events: list[ExitEvent] = []
    remaining = state.remaining

    # 1. expiry, at the candle's open
    if rules.expiry_seconds is not None and ts >= state.opened_ts + rules.expiry_seconds * 1000:
        events.append(ExitEvent("expiry", open, remaining))
        return state.evolve(remaining=0.0), events

    # 2. stop before any target; a gap through the stop fills at the open
    stop = state.stop
    if long:
        gap, touched = open <= stop, low <= stop
    else:
        gap, touched = open >= stop, high >= stop
    if gap or touched:
        events.append(ExitEvent(state.stop_reason, open if gap else stop, remaining))
        return state.evolve(remaining=0.0), events

    new_stop, stop_reason, tp1_done = stop, state.stop_reason, state.tp1_done
    # 3. TP1 partial close (fills at the level, never better)
    if not tp1_done and state.tp1 is not None and (high >= state.tp1 if long else low <= state.tp1):
        qty = min(remaining, state.quantity * rules.tp1_close_fraction)
        events.append(ExitEvent("tp1", state.tp1, qty))
        remaining = remaining - qty
        tp1_done = True
        if rules.breakeven_after_tp1 and (state.entry > new_stop if long else state.entry < new_stop):
            new_stop, stop_reason = state.entry, "breakeven"
    # 4. TP2 closes the rest
    if remaining > 0 and state.tp2 is not None and (high >= state.tp2 if long else low <= state.tp2):
        events.append(ExitEvent("tp2", state.tp2, remaining))
        remaining = 0.0
    if remaining <= 0:
        return state.evolve(remaining=0.0, tp1_done=tp1_done), events

    # 5. end of candle: best price and trailing stop (effective from the next candle)
    best = max(state.best_price, high) if long else min(state.best_price, low)
    if rules.trailing_mode is not None:
        risk = abs(state.entry - state.initial_stop)
        profit = (best - state.entry) if long else (state.entry - best)
        if profit >= rules.trailing_activation_r * risk:
            trail = _trail_level(long, best, state.atr, rules)
            if trail > new_stop if long else trail < new_stop:
                new_stop, stop_reason = trail, "trailing"
    return (
        state.evolve(remaining=remaining, tp1_done=tp1_done, stop=new_stop, stop_reason=stop_reason, best_price=best),
        events,
    )


class QuietScan(NamedTuple):
    """Result of ``scan_quiet_bars``: per position, the first bar index where ``step`` acts (``-1`` if none up to
    ``end``) and the state fields on arrival at that bar (valid where bar >= 0)."""

    bar: np.ndarray  # int64
    best_price: np.ndarray
    stop: np.ndarray
    trailing: np.ndarray  # bool: the stop in force was set by the trailing rule


def scan_quiet_bars(
    *,
    ts: np.ndarray,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    long: np.ndarray,
    entry: np.ndarray,
    stop: np.ndarray,
    initial_stop: np.ndarray,
    tp1: np.ndarray,
    tp2: np.ndarray,
    best: np.ndarray,
    atr: np.ndarray,
    opened_ts: np.ndarray,
    rules: ExitRules,
    block: int = 64,
) -> QuietScan:
    """For every position: from bar ``start[k]`` (inclusive) to ``end[k]`` (exclusive) find the first bar on
    which ``step`` would close something (expiry, stop, tp1, tp2) given the state (``stop``, ``best``) at
    ``start[k]``. ``tp1``/``tp2`` are NaN when absent or already done. On quiet bars only the best price and the
    trailing stop move, exactly as in ``step`` step 5.

    With numba (``engine.compiled``) each position's candles are walked one by one in a compiled loop (it stops at
    the event bar, so a position costs the candles it is held). The NumPy fallback examines the bars in blocks of
    ``block`` bars for all still-quiet positions at once (a loop over blocks, not over bars; the block doubles for
    positions still open, up to 8192 bars, so a position held n bars costs O(log n) iterations). Both give the same
    result (``engine/tests/test_compiled.py``).
    """
    n_pos = len(start)
    out_bar = np.full(n_pos, -1, dtype=np.int64)
    out_best = best.astype(np.float64, copy=True)
    out_stop = stop.astype(np.float64, copy=True)
    out_trailing = np.zeros(n_pos, dtype=bool)
    if n_pos == 0:
        return QuietScan(out_bar, out_best, out_stop, out_trailing)
    risk = np.abs(entry - initial_stop)
    act = rules.trailing_activation_r * risk
    expiry_ts = opened_ts + rules.expiry_seconds * 1000 if rules.expiry_seconds is not None else None
    if compiled.enabled():
        _scan_quiet_bars_loop(
            np.ascontiguousarray(ts, dtype=np.int64),
            np.ascontiguousarray(open, dtype=np.float64),
            np.ascontiguousarray(high, dtype=np.float64),
            np.ascontiguousarray(low, dtype=np.float64),
            np.ascontiguousarray(start, dtype=np.int64),
            np.ascontiguousarray(end, dtype=np.int64),
            np.where(long, 1.0, -1.0),
            np.asarray(entry, dtype=np.float64),
            np.asarray(tp1, dtype=np.float64),
            np.asarray(tp2, dtype=np.float64),
            np.asarray(atr, dtype=np.float64),
            np.asarray(act, dtype=np.float64),
            np.zeros(n_pos, dtype=np.int64) if expiry_ts is None else np.asarray(expiry_ts, dtype=np.int64),
            expiry_ts is not None,
            _TRAILING_CODES[rules.trailing_mode],
            float(rules.trailing_atr_mult),
            float(rules.trailing_pct),
            out_bar,
            out_best,
            out_stop,
            out_trailing,
        )
        return QuietScan(out_bar, out_best, out_stop, out_trailing)
    n_bars = len(high)
    # sign trick: work in "long space" by negating short prices (exact in IEEE arithmetic)
    sgn = np.where(long, 1.0, -1.0)
    idx = np.arange(n_pos)
    cur_start = start.astype(np.int64).copy()
    cur_best = best.astype(np.float64).copy()  # long-space best (sign applied)
    cur_best *= sgn
    cur_stop_l = stop * sgn
    entry_l = entry * sgn
    tp1_l = tp1 * sgn
    tp2_l = tp2 * sgn
    trailing_flag = np.zeros(n_pos, dtype=bool)
    active = cur_start < end
    while active.any():
        a = idx[active]
        offs = np.arange(block)
        s = cur_start[a]
        bars = s[:, None] + offs[None, :]
        valid = bars < end[a][:, None]
        bars_c = np.minimum(bars, n_bars - 1)
        sg = sgn[a][:, None]
        # long-space candle: high_l is the favourable extreme, low_l the adverse one
        h_raw = high[bars_c]
        l_raw = low[bars_c]
        high_l = np.where(sg > 0, h_raw, -l_raw)
        low_l = np.where(sg > 0, l_raw, -h_raw)
        open_l = open[bars_c] * sg
        # best before each bar: running max of previous favourable extremes, starting from the carried best
        prev = np.empty_like(high_l)
        prev[:, 0] = cur_best[a]
        prev[:, 1:] = high_l[:, :-1]
        best_before = np.maximum.accumulate(prev, axis=1)
        stop_at = np.broadcast_to(cur_stop_l[a][:, None], best_before.shape)
        trail_flag_at = np.broadcast_to(trailing_flag[a][:, None], best_before.shape)
        if rules.trailing_mode is not None:
            # trailing evaluated in real price space to reproduce step()'s float arithmetic exactly
            best_real = best_before * sg
            if rules.trailing_mode == "atr":
                dist = rules.trailing_atr_mult * atr[a][:, None]
                trail_real = np.where(sg > 0, best_real - dist, best_real + dist)
            else:
                trail_real = np.where(
                    sg > 0, best_real * (1.0 - rules.trailing_pct), best_real * (1.0 + rules.trailing_pct)
                )
            trail_l = trail_real * sg
            profit = best_before - entry_l[a][:, None]
            on = profit >= act[a][:, None]
            raised = on & (trail_l > stop_at)
            # the first bar's stop is the carried one; trailing moves from bar 1 on within the block are the
            # running max (trail_l is monotone in best, so the running max is the current value)
            raised[:, 0] = False
            stop_at = np.where(raised, trail_l, stop_at)
            trail_flag_at = trail_flag_at | raised
        hit = (open_l <= stop_at) | (low_l <= stop_at)
        t1 = tp1_l[a][:, None]
        t2 = tp2_l[a][:, None]
        hit |= ~np.isnan(t1) & (high_l >= t1)
        hit |= ~np.isnan(t2) & (high_l >= t2)
        if expiry_ts is not None:
            hit |= ts[bars_c] >= expiry_ts[a][:, None]
        hit &= valid
        any_hit = hit.any(axis=1)
        first = np.argmax(hit, axis=1)
        rows = np.arange(len(a))
        # positions that found their bar
        fa = a[any_hit]
        fr = rows[any_hit]
        fc = first[any_hit]
        out_bar[fa] = s[any_hit] + fc
        out_best[fa] = best_before[fr, fc] * sgn[fa]
        out_stop[fa] = stop_at[fr, fc] * sgn[fa]
        out_trailing[fa] = trail_flag_at[fr, fc]
        # the others carry their state to the next block (state after the last bar of the block)
        na = a[~any_hit]
        nr = rows[~any_hit]
        if len(na):
            last_high = high_l[nr, -1]
            new_best = np.maximum(best_before[nr, -1], last_high)
            new_stop = stop_at[nr, -1].copy()
            new_flag = trail_flag_at[nr, -1].copy()
            if rules.trailing_mode is not None:
                sgn_n = sgn[na]
                best_real = new_best * sgn_n
                if rules.trailing_mode == "atr":
                    dist = rules.trailing_atr_mult * atr[na]
                    trail_real = np.where(sgn_n > 0, best_real - dist, best_real + dist)
                else:
                    trail_real = np.where(
                        sgn_n > 0, best_real * (1.0 - rules.trailing_pct), best_real * (1.0 + rules.trailing_pct)
                    )
                trail_l = trail_real * sgn_n
                on = (new_best - entry_l[na]) >= act[na]
                raised = on & (trail_l > new_stop)
                new_stop = np.where(raised, trail_l, new_stop)
                new_flag = new_flag | raised
            cur_best[na] = new_best
            cur_stop_l[na] = new_stop
            trailing_flag[na] = new_flag
            cur_start[na] = cur_start[na] + block
        active = np.zeros(n_pos, dtype=bool)
        active[na] = cur_start[na] < end[na]
        # long-running positions: grow the block (fewer iterations) while bounding the work array's size
        block = int(min(block * 2, 8192, max(64, 2_000_000 // max(len(na), 1))))
    return QuietScan(out_bar, out_best, out_stop, out_trailing)


_TRAILING_CODES = {None: 0, "atr": 1, "pct": 2}


@compiled.loop
def _scan_quiet_bars_loop(
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    sgn: np.ndarray,
    entry: np.ndarray,
    tp1: np.ndarray,
    tp2: np.ndarray,
    atr: np.ndarray,
    act: np.ndarray,
    expiry_ts: np.ndarray,
    has_expiry: bool,
    trailing: int,
    trailing_atr_mult: float,
    trailing_pct: float,
    out_bar: np.ndarray,
    out_best: np.ndarray,
    out_stop: np.ndarray,
    out_trailing: np.ndarray,
) -> None:
    """``scan_quiet_bars`` candle by candle for each position (compiled): the same long-space arithmetic as the
    vectorised version (short prices negated, the trailing level computed in real price space), so the same floats.
    ``out_best``/``out_stop`` hold the starting state on entry and are overwritten where a bar is found."""
    n_bars = high.shape[0]
    for k in range(start.shape[0]):
        sg = sgn[k]
        best_l = out_best[k] * sg
        stop_l = out_stop[k] * sg
        flag = False
        entry_l = entry[k] * sg
        tp1_l = tp1[k] * sg
        tp2_l = tp2[k] * sg
        last = min(end[k], n_bars)
        for b in range(start[k], last):
            if sg > 0:
                high_l = high[b]
                low_l = low[b]
            else:
                high_l = -low[b]
                low_l = -high[b]
            open_l = open_[b] * sg
            hit = open_l <= stop_l or low_l <= stop_l
            hit = hit or (not np.isnan(tp1_l) and high_l >= tp1_l)
            hit = hit or (not np.isnan(tp2_l) and high_l >= tp2_l)
            hit = hit or (has_expiry and ts[b] >= expiry_ts[k])
            if hit:
                out_bar[k] = b
                out_best[k] = best_l * sg
                out_stop[k] = stop_l * sg
                out_trailing[k] = flag
                break
            # a quiet candle: only the best price and the trailing stop move (step 5)
            best_l = max(best_l, high_l)
            if trailing != 0:
                best_real = best_l * sg
                if trailing == 1:
                    dist = trailing_atr_mult * atr[k]
                    trail_real = best_real - dist if sg > 0 else best_real + dist
                else:
                    trail_real = best_real * (1.0 - trailing_pct) if sg > 0 else best_real * (1.0 + trailing_pct)
                trail_l = trail_real * sg
                if (best_l - entry_l) >= act[k] and trail_l > stop_l:
                    stop_l = trail_l
                    flag = True
