"""Technical indicators on float64 NumPy arrays.

Conventions: every function takes 1-D arrays and returns an array of the same length, with NaN during the
warm-up (where ``ta`` 0.11 returns NaN, or 0 for ATR/ADX). Where ``ta`` computes the same quantity the values
agree to 1e-9 relative (checked in ``engine/tests/test_indicators.py``):

- ``ema``  = ``ta.trend.EMAIndicator`` (span EMA, ``adjust=False``, seeded with the first value);
- ``sma``  = ``ta.trend.SMAIndicator``;
- ``rsi``  = ``ta.momentum.RSIIndicator`` (Wilder smoothing seeded at the first bar);
- ``atr``  = ``ta.volatility.AverageTrueRange`` (Wilder, seeded with the mean of the first ``period`` ranges);
- ``adx``  = ``ta.trend.ADXIndicator.adx`` (classic Wilder ADX: first value at index ``2 * period - 1``).

Recursive smoothers (EMA, Wilder) are computed blockwise with a small matrix product and a loop over blocks of
32 bars only (see ``_linear_recursion``): several series with the same smoothing run in one pass, several times
faster than pandas' ``ewm`` and free of pandas in the hot path.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
    out = _recursive_smooth(x, 2.0 / (period + 1.0), 0, float(x[0]))
    out[: period - 1] = np.nan
    return out


def sma(values: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average; NaN for the first ``period - 1`` bars."""
    period = _check_period(period)
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if len(x) >= period:
        out[period - 1 :] = sliding_window_view(x, period).mean(axis=1)
    return out


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    """Maximum of the last ``window`` bars (inclusive); NaN during the warm-up."""
    window = _check_period(window, "window")
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        out[window - 1 :] = sliding_window_view(x, window).max(axis=1)
    return out


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    """Minimum of the last ``window`` bars (inclusive); NaN during the warm-up."""
    window = _check_period(window, "window")
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        out[window - 1 :] = sliding_window_view(x, window).min(axis=1)
    return out


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's RSI (0..100); 100 when there were no losses; NaN for the first ``period - 1`` bars."""
    period = _check_period(period)
    x = _as_float(close)
    if len(x) == 0:
        return x.copy()
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
