"""Technical indicators on float64 NumPy arrays.

Conventions: every function takes 1-D arrays and returns an array of the same length, with NaN during the
warm-up (where ``ta`` 0.11 returns NaN, or 0 for ATR/ADX). Where ``ta`` computes the same quantity the values
agree to 1e-9 relative (checked in ``engine/tests/test_indicators.py``):

- ``ema``  = ``ta.trend.EMAIndicator`` (span EMA, ``adjust=False``, seeded with the first value);
- ``sma``  = ``ta.trend.SMAIndicator``;
- ``rsi``  = ``ta.momentum.RSIIndicator`` (Wilder smoothing seeded at the first bar);
- ``atr``  = ``ta.volatility.AverageTrueRange`` (Wilder, seeded with the mean of the first ``period`` ranges);
- ``adx``  = ``ta.trend.ADXIndicator.adx`` (classic Wilder ADX: first value at index ``2 * period - 1``).

Recursive smoothers (EMA, Wilder) and the nearest swing level per bar are loops compiled with numba
(``engine.compiled``); without numba they run as NumPy code: the smoothers blockwise, with a small matrix product
and a loop over blocks of 32 bars only (``_linear_recursion``), the swing levels on the sparse pivot list. Both
paths give the same values (``engine/tests/test_compiled.py``). Measured on 2 cores (``benchmarks/bench_indicators.py``
reports the ratio to pandas' ``ewm`` in the same run): the compiled EMA is faster than ``ewm`` at every length; the
NumPy fallback is faster on short series (1,000 candles) but slower than ``ewm`` on long ones (200,000 candles).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine import compiled
from engine.errors import InvalidParameters


def _as_float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _check_period(period: int, name: str = "period") -> int:
    if int(period) != period or period < 1:
        raise InvalidParameters(f"{name} must be a positive integer, got {period!r}")
    return int(period)


_BLOCK = 32


def _linear_recursion(x: np.ndarray, alpha: float) -> np.ndarray:
    """Rows of ``y[:, i] = (1 - alpha) * y[:, i - 1] + alpha * x[:, i]`` with ``y[:, -1] = 0``, vectorised.

    The series is cut into blocks of ``_BLOCK`` bars: inside a block the recursion is a product with a
    lower-triangular Toeplitz matrix of decay powers (no growing powers, so no overflow or loss of precision),
    and only the carry between blocks runs as a loop (``n / 32`` steps instead of ``n``).
    """
    rows, n = x.shape
    blocks = -(-n // _BLOCK)
    padded = np.zeros((rows, blocks * _BLOCK))
    padded[:, :n] = x
    kernel, carry_weights, block_decay = _block_kernel(alpha)
    local = padded.reshape(rows, blocks, _BLOCK) @ kernel
    ends = local[:, :, -1].tolist()
    carry = np.empty((rows, blocks))
    for r, row_ends in enumerate(ends):
        previous = 0.0
        row_carry = []
        for block_end in row_ends:
            row_carry.append(previous)
            previous = block_end + block_decay * previous
        carry[r] = row_carry
    local += carry[:, :, None] * carry_weights
    return local.reshape(rows, blocks * _BLOCK)[:, :n]


@functools.lru_cache(maxsize=64)
def _block_kernel(alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    decay = 1.0 - alpha
    lag = np.arange(_BLOCK)[None, :] - np.arange(_BLOCK)[:, None]
    kernel = np.where(lag >= 0, alpha * decay ** np.maximum(lag, 0), 0.0)
    carry_weights = decay ** np.arange(1, _BLOCK + 1)
    for array in (kernel, carry_weights):
        array.setflags(write=False)
    return kernel, carry_weights, decay**_BLOCK


def _recursive_smooth_many(series: list[np.ndarray], alpha: float, start: int, seeds: list[float]) -> np.ndarray:
    """``out[r, start] = seeds[r]``; ``out[r, i] = (1 - alpha) * out[r, i-1] + alpha * series[r][i]`` after;
    NaN before ``start``. All rows share ``alpha`` and ``start`` and are smoothed in one pass."""
    n = len(series[0])
    out = np.full((len(series), n), np.nan)
    if start >= n:
        return out
    x = np.vstack([s[start:] for s in series]).astype(np.float64, copy=True)
    # y[start] = seed  <=>  a zero state before it and an input of seed / alpha at it
    x[:, 0] = np.asarray(seeds, dtype=np.float64) / alpha
    out[:, start:] = _linear_recursion(x, alpha)
    return out


def _recursive_smooth(values: np.ndarray, alpha: float, start: int, seed: float) -> np.ndarray:
    """``out[start] = seed``; ``out[i] = (1 - alpha) * out[i-1] + alpha * values[i]`` after it; NaN before."""
    return _recursive_smooth_many([values], alpha, start, [seed])[0]


def ema(values: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (period + 1)``; NaN for the first ``period - 1`` bars."""
    period = _check_period(period)
    x = _as_float(values)
    if len(x) == 0:
        return x.copy()
    if compiled.enabled():
        out = np.empty(len(x))
        _ema_loop(x, 2.0 / (period + 1.0), period, out)
        return out
    out = _recursive_smooth(x, 2.0 / (period + 1.0), 0, float(x[0]))
    out[: period - 1] = np.nan
    return out


def sma(values: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average; NaN for the first ``period - 1`` bars."""
    period = _check_period(period)
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if len(x) >= period:
        if compiled.enabled():
            _rolling_mean_loop(x, period, out)
        else:
            out[period - 1 :] = sliding_window_view(x, period).mean(axis=1)
    return out


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    """Maximum of the last ``window`` bars (inclusive); NaN during the warm-up."""
    window = _check_period(window, "window")
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        if compiled.enabled():
            _rolling_extreme_loop(x, window, True, out)
        else:
            out[window - 1 :] = sliding_window_view(x, window).max(axis=1)
    return out


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    """Minimum of the last ``window`` bars (inclusive); NaN during the warm-up."""
    window = _check_period(window, "window")
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        if compiled.enabled():
            _rolling_extreme_loop(x, window, False, out)
        else:
            out[window - 1 :] = sliding_window_view(x, window).min(axis=1)
    return out


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's RSI (0..100); 100 when there were no losses; NaN for the first ``period - 1`` bars."""
    period = _check_period(period)
    x = _as_float(close)
    if len(x) == 0:
        return x.copy()
    if compiled.enabled():
        out = np.empty(len(x))
        _rsi_loop(x, period, out)
        return out
    diff = np.diff(x, prepend=np.nan)
    up = np.where(diff > 0, diff, 0.0)
    down = np.where(diff < 0, -diff, 0.0)
    alpha = 1.0 / period
    avg_up, avg_down = _recursive_smooth_many([up, down], alpha, 0, [float(up[0]), float(down[0])])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(avg_down == 0, 100.0, 100.0 - 100.0 / (1.0 + avg_up / avg_down))
    out[: period - 1] = np.nan
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``max(high, prev close) - min(low, prev close)``; the first bar is ``high - low``."""
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    prev_close = np.r_[np.nan, c[:-1]]
    tr = np.fmax(np.fmax(h - lo, np.abs(h - prev_close)), np.abs(lo - prev_close))
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's average true range, seeded with the mean of the first ``period`` true ranges."""
    period = _check_period(period)
    if compiled.enabled():
        h, lo, c = _as_float(high), _as_float(low), _as_float(close)
        out = np.full(len(c), np.nan)
        if len(c) >= period:
            _atr_loop(h, lo, c, period, out)
        return out
    tr = true_range(high, low, close)
    if len(tr) < period:
        return np.full(len(tr), np.nan)
    return _recursive_smooth(tr, 1.0 / period, period - 1, float(tr[:period].mean()))


def directional_movement(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilder's ``(+DI, -DI, ADX)``.

    +DI/-DI are defined from index ``period``, ADX from index ``2 * period - 1`` (NaN before).
    """
    period = _check_period(period)
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    n = len(c)
    plus_di = np.full(n, np.nan)
    minus_di = np.full(n, np.nan)
    adx_values = np.full(n, np.nan)
    if n <= period:
        return plus_di, minus_di, adx_values
    if compiled.enabled():
        _directional_movement_loop(h, lo, c, period, plus_di, minus_di, adx_values)
        return plus_di, minus_di, adx_values
    tr = true_range(h, lo, c)
    up_move = np.r_[np.nan, h[1:] - h[:-1]]
    down_move = np.r_[np.nan, lo[:-1] - lo[1:]]
    plus_dm = np.where((up_move > down_move) & (up_move > 0), up_move, 0.0)
    minus_dm = np.where((down_move > up_move) & (down_move > 0), down_move, 0.0)
    alpha = 1.0 / period
    # Wilder sums over bars 1..period seed the smoothing at index `period`; a common factor cancels in DI.
    smoothed_tr, smoothed_plus, smoothed_minus = _recursive_smooth_many(
        [tr, plus_dm, minus_dm], alpha, period, [float(v[1 : period + 1].mean()) for v in (tr, plus_dm, minus_dm)]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = np.where(smoothed_tr != 0, 100.0 * smoothed_plus / smoothed_tr, 0.0)
        minus_di = np.where(smoothed_tr != 0, 100.0 * smoothed_minus / smoothed_tr, 0.0)
        di_sum = plus_di + minus_di
        dx = np.where(di_sum != 0, 100.0 * np.abs(plus_di - minus_di) / di_sum, 0.0)
    plus_di[:period] = np.nan
    minus_di[:period] = np.nan
    first_adx = 2 * period - 1
    if n > first_adx:
        adx_values = _recursive_smooth(dx, alpha, first_adx, float(dx[period : first_adx + 1].mean()))
    return plus_di, minus_di, adx_values


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's average directional index (trend strength, 0..100); NaN before index ``2 * period - 1``."""
    return directional_movement(high, low, close, period)[2]


def volume_ratio(volume: np.ndarray, period: int = 20) -> np.ndarray:
    """``volume / SMA(volume, period)`` (the SMA includes the current bar); NaN in the warm-up or on zero SMA."""
    v = _as_float(volume)
    if compiled.enabled():
        period = _check_period(period)
        out = np.full(len(v), np.nan)
        if len(v) >= period:
            _volume_ratio_loop(v, period, out)
        return out
    average = sma(v, period)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(average > 0, v / average, np.nan)


def swing_points(values: np.ndarray, window: int, *, kind: str) -> np.ndarray:
    """Boolean mask of swing highs (``kind="high"``) or swing lows (``kind="low"``).

    Bar ``j`` is a swing high when ``values[j]`` is the maximum of ``values[j - window : j + window + 1]``
    (ties: the first bar of a flat top counts). A swing point is only *known* ``window`` bars later; use
    ``support_resistance`` for a look-ahead-free view.
    """
    window = _check_period(window, "window")
    x = _as_float(values)
    mask = np.zeros(len(x), dtype=bool)
    span = 2 * window + 1
    if len(x) < span:
        return mask
    if kind not in ("high", "low"):
        raise InvalidParameters(f"swing kind must be 'high' or 'low', got {kind!r}")
    if compiled.enabled():
        _swing_points_loop(x, window, kind == "high", mask)
        return mask
    # running max/min over the window's shifted copies (2 * window element-wise passes; NaN propagates like max())
    pick = np.maximum if kind == "high" else np.minimum
    m = len(x) - span + 1
    earlier = x[:m].copy()
    for shift in range(1, window):
        pick(earlier, x[shift : shift + m], out=earlier)
    extreme = earlier.copy()
    for shift in range(window, span):
        pick(extreme, x[shift : shift + m], out=extreme)
    centre = x[window : window + m]
    with np.errstate(invalid="ignore"):
        beyond_earlier = earlier < centre if kind == "high" else earlier > centre
    is_swing = (centre == extreme) & beyond_earlier
    mask[window : len(x) - window] = is_swing
    return mask


def support_resistance(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, *, window: int = 3, lookback: int = 96
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest swing support below and swing resistance above each bar's close, without look-ahead.

    At bar ``i`` only swing points confirmed by bar ``i`` count (pivot ``j <= i - window``) and only those
    within the last ``lookback`` bars (``j >= i - lookback``). ``resistance[i]`` is the lowest such swing high
    strictly above ``close[i]``, ``support[i]`` the highest such swing low strictly below it; NaN when none.
    """
    window = _check_period(window, "window")
    lookback = _check_period(lookback, "lookback")
    if lookback <= window:
        raise InvalidParameters(f"sr lookback ({lookback}) must exceed the swing window ({window})")
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    support = _nearest_swing_level(swing_points(lo, window, kind="low"), lo, c, window, lookback, above=False)
    resistance = _nearest_swing_level(swing_points(h, window, kind="high"), h, c, window, lookback, above=True)
    return support, resistance


def _nearest_swing_level(
    is_swing: np.ndarray, values: np.ndarray, close: np.ndarray, window: int, lookback: int, *, above: bool
) -> np.ndarray:
    """Per bar, the nearest swing value above (or below) the close among pivots ``j in [i - lookback, i - window]``.

    Works on the sparse pivot list: swing points are at least ``window + 1`` bars apart, so each bar has a handful
    of candidates; the k-th candidate of every bar is compared in one vectorised pass per k (small arrays that stay
    in cache, instead of one bars x candidates matrix).
    """
    n = len(close)
    out = np.full(n, np.nan)
    positions = np.flatnonzero(is_swing)
    if positions.size == 0:
        return out
    if compiled.enabled():
        _nearest_swing_level_loop(positions, values[positions], close, window, lookback, above, out)
        return out
    bars = np.arange(n)
    first = np.searchsorted(positions, bars - lookback, side="left")
    stop = np.searchsorted(positions, bars - window, side="right")
    width = int((stop - first).max())
    if width <= 0:
        return out
    pivot_values = values[positions]
    last = positions.size - 1
    nearest = np.full(n, np.inf if above else -np.inf)
    with np.errstate(invalid="ignore"):
        for k in range(width):
            candidate = first + k
            level = pivot_values[np.minimum(candidate, last)]
            if above:
                better = (candidate < stop) & (level > close) & (level < nearest)
            else:
                better = (candidate < stop) & (level < close) & (level > nearest)
            np.copyto(nearest, level, where=better)
    found = np.isfinite(nearest)
    out[found] = nearest[found]
    return out


@compiled.loop
def _nearest_swing_level_loop(
    positions: np.ndarray,
    pivot_values: np.ndarray,
    close: np.ndarray,
    window: int,
    lookback: int,
    above: bool,
    out: np.ndarray,
) -> None:
    """``_nearest_swing_level`` as one pass over the bars with a sliding pointer into the pivot list (compiled)."""
    m = positions.shape[0]
    first = 0
    for i in range(close.shape[0]):
        while first < m and positions[first] < i - lookback:
            first += 1
        c = close[i]
        nearest = np.inf if above else -np.inf
        j = first
        while j < m and positions[j] <= i - window:
            level = pivot_values[j]
            if above:
                if level > c and level < nearest:
                    nearest = level
            elif level < c and level > nearest:
                nearest = level
            j += 1
        if np.isfinite(nearest):
            out[i] = nearest


# ---- compiled twins of the NumPy paths above (engine.compiled; same results, checked in test_compiled.py) -------


@compiled.loop
def _ema_loop(x: np.ndarray, alpha: float, period: int, out: np.ndarray) -> None:
    """Seeded with the first value; NaN for the first ``period - 1`` bars."""
    decay = 1.0 - alpha
    y = x[0]
    for i in range(x.shape[0]):
        if i > 0:
            y = decay * y + alpha * x[i]
        out[i] = y if i >= period - 1 else np.nan


@compiled.loop
def _rolling_mean_loop(x: np.ndarray, period: int, out: np.ndarray) -> None:
    for i in range(period - 1, x.shape[0]):
        total = 0.0
        for j in range(i - period + 1, i + 1):
            total += x[j]
        out[i] = total / period


@compiled.loop
def _rolling_extreme_loop(x: np.ndarray, window: int, maximum: bool, out: np.ndarray) -> None:
    """Rolling max (``maximum``) or min; a NaN in the window gives NaN, as NumPy's max/min do."""
    for i in range(window - 1, x.shape[0]):
        best = x[i - window + 1]
        for j in range(i - window + 2, i + 1):
            v = x[j]
            if np.isnan(best):
                break
            if np.isnan(v) or (v > best if maximum else v < best):
                best = v
        out[i] = best


@compiled.loop
def _rsi_loop(x: np.ndarray, period: int, out: np.ndarray) -> None:
    alpha = 1.0 / period
    decay = 1.0 - alpha
    avg_up = 0.0  # the first bar has no change: both averages are seeded with 0
    avg_down = 0.0
    for i in range(x.shape[0]):
        if i > 0:
            d = x[i] - x[i - 1]
            up = d if d > 0 else 0.0
            down = -d if d < 0 else 0.0
            avg_up = decay * avg_up + alpha * up
            avg_down = decay * avg_down + alpha * down
        if i < period - 1:
            out[i] = np.nan
        elif avg_down == 0:
            out[i] = 100.0
        else:
            out[i] = 100.0 - 100.0 / (1.0 + avg_up / avg_down)


@compiled.loop
def _atr_loop(h: np.ndarray, lo: np.ndarray, c: np.ndarray, period: int, out: np.ndarray) -> None:
    total = 0.0
    for i in range(period):
        span = h[i] - lo[i]
        if i > 0:
            span = max(span, abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
        total += span
    alpha = 1.0 / period
    decay = 1.0 - alpha
    y = total / period
    out[period - 1] = y
    for i in range(period, c.shape[0]):
        tr = max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
        y = decay * y + alpha * tr
        out[i] = y


@compiled.loop
def _directional_movement_loop(
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    period: int,
    plus_di: np.ndarray,
    minus_di: np.ndarray,
    adx_values: np.ndarray,
) -> None:
    """Wilder's +DI/-DI from index ``period`` and ADX from ``2 * period - 1`` (outputs hold NaN on entry)."""
    n = c.shape[0]
    alpha = 1.0 / period
    decay = 1.0 - alpha
    s_tr = 0.0
    s_plus = 0.0
    s_minus = 0.0
    dx_total = 0.0
    adx = 0.0
    first_adx = 2 * period - 1
    for i in range(1, n):
        tr = max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
        up_move = h[i] - h[i - 1]
        down_move = lo[i - 1] - lo[i]
        plus_dm = up_move if (up_move > down_move and up_move > 0) else 0.0
        minus_dm = down_move if (down_move > up_move and down_move > 0) else 0.0
        if i < period:  # Wilder's sums over bars 1..period seed the smoothing at index `period`
            s_tr += tr
            s_plus += plus_dm
            s_minus += minus_dm
            continue
        if i == period:
            s_tr = (s_tr + tr) / period
            s_plus = (s_plus + plus_dm) / period
            s_minus = (s_minus + minus_dm) / period
        else:
            s_tr = decay * s_tr + alpha * tr
            s_plus = decay * s_plus + alpha * plus_dm
            s_minus = decay * s_minus + alpha * minus_dm
        p = 100.0 * s_plus / s_tr if s_tr != 0 else 0.0
        m = 100.0 * s_minus / s_tr if s_tr != 0 else 0.0
        plus_di[i] = p
        minus_di[i] = m
        di_sum = p + m
        dx = 100.0 * abs(p - m) / di_sum if di_sum != 0 else 0.0
        if i < first_adx:
            dx_total += dx
        elif i == first_adx:
            adx = (dx_total + dx) / period
            adx_values[i] = adx
        else:
            adx = decay * adx + alpha * dx
            adx_values[i] = adx


@compiled.loop
def _volume_ratio_loop(v: np.ndarray, period: int, out: np.ndarray) -> None:
    for i in range(period - 1, v.shape[0]):
        total = 0.0
        for j in range(i - period + 1, i + 1):
            total += v[j]
        average = total / period
        if average > 0:
            out[i] = v[i] / average


@compiled.loop
def _swing_points_loop(x: np.ndarray, window: int, high: bool, mask: np.ndarray) -> None:
    """Bar ``j`` is a swing high when every bar of the ``window`` before it is strictly lower and none of the
    ``window`` after it is higher (mirrored for lows); any NaN in the span rules it out, as in the NumPy path."""
    sign = 1.0 if high else -1.0  # lows as highs of the negated series (negation is exact)
    for j in range(window, x.shape[0] - window):
        centre = x[j] * sign
        swing = not np.isnan(centre)
        for k in range(j - window, j + window + 1):
            if not swing:
                break
            if k != j:
                swing = x[k] * sign < centre if k < j else x[k] * sign <= centre
        mask[j] = swing
