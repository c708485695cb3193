"""OHLCV candles as immutable NumPy columns, resampling and data-quality checks.

Candles are keyed by their open time in integer milliseconds (UTC), exactly like ccxt's ``fetch_ohlcv`` rows
``[ts, open, high, low, close, volume]``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine import compiled
from engine.errors import InsufficientData, InvalidParameters

MINUTE_MS = 60_000

TIMEFRAME_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}

_PRICE_FIELDS = ("open", "high", "low", "close", "volume")


def timeframe_to_ms(timeframe: str) -> int:
    """``"15m"`` -> 900000. Raises ``InvalidParameters`` for an unknown timeframe."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise InvalidParameters(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAME_MS)}") from None


def _readonly(values: np.ndarray, dtype: type) -> np.ndarray:
    array = np.array(values, dtype=dtype, copy=True)
    if array.ndim != 1:
        raise InvalidParameters(f"candle columns must be one-dimensional, got shape {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Candles:
    """Column-oriented OHLCV candles; ``ts`` is the open time in ms (int64), the rest float64.

    The arrays are copied and made read-only on construction, so a ``Candles`` can be shared between
    threads, cached and sliced without defensive copies.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _readonly(self.ts, np.int64))
        for name in _PRICE_FIELDS:
            object.__setattr__(self, name, _readonly(getattr(self, name), np.float64))
        lengths = {name: len(getattr(self, name)) for name in ("ts", *_PRICE_FIELDS)}
        if len(set(lengths.values())) != 1:
            raise InvalidParameters(f"candle columns differ in length: {lengths}")

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Candles:
        return cls(*(np.empty(0) for _ in range(6)))

    @classmethod
    def from_ohlcv(cls, rows: Iterable[Sequence[float]]) -> Candles:
        """From ccxt rows ``[ts_ms, open, high, low, close, volume]`` (``None`` volume becomes NaN)."""
        rows = list(rows)
        if not rows:
            return cls.empty()
        table = np.array([[np.nan if value is None else value for value in row[:6]] for row in rows], dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != 6:
            raise InvalidParameters("OHLCV rows must have six fields: ts, open, high, low, close, volume")
        ts = np.array([int(row[0]) for row in rows], dtype=np.int64)  # exact, no float round trip
        return cls(ts, table[:, 1], table[:, 2], table[:, 3], table[:, 4], table[:, 5])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Candles:
        """From a frame with columns ``date, open, high, low, close, volume``.

        ``date`` may be a timezone-aware datetime column (as in the shared feather files) or integer ms.
        """
        missing = [name for name in ("date", *_PRICE_FIELDS) if name not in frame.columns]
        if missing:
            raise InvalidParameters(f"candle frame lacks columns {missing}")
        dates = frame["date"]
        ts = _datetime_to_ms(dates) if pd.api.types.is_datetime64_any_dtype(dates) else dates.to_numpy(dtype=np.int64)
        return cls(ts, *(frame[name].to_numpy(dtype=np.float64) for name in _PRICE_FIELDS))

    def to_frame(self) -> pd.DataFrame:
        """A frame with a UTC ``date`` column (open time) and the five price/volume columns."""
        return pd.DataFrame(
            {
                "date": pd.to_datetime(self.ts, unit="ms", utc=True),
                **{name: getattr(self, name) for name in _PRICE_FIELDS},
            }
        )

    # -- slicing ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ts)

    def _take(self, index: slice | np.ndarray) -> Candles:
        """The candles at ``index``: views for a slice (the columns are read-only already), copies otherwise."""
        taken = object.__new__(Candles)
        for name in ("ts", *_PRICE_FIELDS):
            column = getattr(self, name)[index]
            column.setflags(write=False)
            object.__setattr__(taken, name, column)
        return taken

    def tail(self, n: int) -> Candles:
        """The last ``n`` candles (all of them when there are fewer)."""
        if n < 0:
            raise InvalidParameters(f"tail(n) needs n >= 0, got {n}")
        return self._take(slice(max(len(self) - n, 0), None))

    def slice_until(self, ts_ms: int) -> Candles:
        """Candles whose open time is ``<= ts_ms`` (assumes ascending ``ts``)."""
        end = int(np.searchsorted(self.ts, ts_ms, side="right"))
        return self if end == len(self) else self._take(slice(0, end))

    def closed_at(self, now_ms: int, timeframe_ms: int) -> Candles:
        """Drop candles still forming at ``now_ms`` (open time + timeframe > now)."""
        return self.slice_until(now_ms - timeframe_ms)


def _datetime_to_ms(dates: pd.Series) -> np.ndarray:
    if dates.dt.tz is None:
        dates = dates.dt.tz_localize("UTC")
    return dates.dt.tz_convert("UTC").dt.as_unit("ms").astype("int64").to_numpy()


def infer_timeframe_ms(c: Candles) -> int:
    """The most common step between consecutive open times."""
    if len(c) < 2:
        raise InsufficientData("need at least two candles to infer the timeframe")
    steps = np.diff(c.ts)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise InsufficientData("timestamps never increase; cannot infer the timeframe")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def resample(c: Candles, minutes: int, *, source_timeframe_ms: int | None = None) -> Candles:
    """Aggregate into ``minutes`` buckets, labelled by their left edge (open time), complete buckets only.

    A bucket is complete when it holds every source candle of its span: a bucket with a hole and the
    still-forming last bucket are dropped, so a 1h candle only exists once all four 15m candles are known.
    ``source_timeframe_ms`` defaults to the most common step of ``c.ts``.
    """
    target_ms = int(minutes) * MINUTE_MS
    if target_ms <= 0:
        raise InvalidParameters(f"resample minutes must be positive, got {minutes}")
    if len(c) == 0:
        return Candles.empty()
    source_ms = source_timeframe_ms or infer_timeframe_ms(c)
    if target_ms % source_ms:
        raise InvalidParameters(f"{minutes}m is not a multiple of the source timeframe ({source_ms} ms)")
    per_bucket = target_ms // source_ms
    bucket = c.ts - (c.ts % target_ms)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, len(c)])
    ends = starts + counts - 1
    complete = counts == per_bucket
    # a complete bucket also needs its candles on the source grid (no duplicates standing in for a hole)
    complete &= (c.ts[ends] - c.ts[starts]) == target_ms - source_ms
    starts, ends, counts = starts[complete], ends[complete], counts[complete]
    if starts.size == 0:
        return Candles.empty()
    return Candles(
        bucket[starts],
        c.open[starts],
        _reduce(np.maximum, c.high, starts, ends),
        _reduce(np.minimum, c.low, starts, ends),
        c.close[ends],
        _reduce(np.add, c.volume, starts, ends),
    )


def _reduce(ufunc: np.ufunc, values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    # reduceat over [start, next start) pairs; an (end + 1) boundary after each start keeps buckets apart
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = ends + 1
    padded = np.r_[values, values[-1:]] if bounds[-1] == len(values) else values
    return ufunc.reduceat(padded, bounds)[0::2]


@dataclass(frozen=True)
class CandleReport:
    """Data-quality findings for one candle series.

    ``problems`` are blocking (the scanner skips the symbol with ``reason``); ``warnings`` are not.
    """

    rows: int
    timeframe_ms: int
    missing_candles: int
    gaps: int
    duplicates: int
    non_monotonic: int
    nan_rows: int
    zero_volume: int
    misaligned: int
    invalid_ohlc: int
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


_COUNTS = ("duplicates", "non_monotonic", "gaps", "missing", "nan_rows", "zero_volume", "invalid_ohlc", "misaligned")


def check_candles(
    c: Candles,
    timeframe_ms: int,
    *,
    zero_volume_max_fraction: float = 0.05,
    min_rows: int = 0,
) -> CandleReport:
    """Find gaps, duplicates, NaN, zero volume, non-monotonic and misaligned open times, and broken OHLC.

    Blocking: fewer than ``min_rows`` rows, any gap, duplicate, step back in time, NaN price, OHLC that do not
    bracket each other, open times off the timeframe grid, or more than ``zero_volume_max_fraction`` of rows
    with zero volume. Zero volume below that fraction is only a warning.
    """
    if timeframe_ms <= 0:
        raise InvalidParameters(f"timeframe_ms must be positive, got {timeframe_ms}")
    rows = len(c)
    if compiled.enabled():
        counts_array = np.zeros(len(_COUNTS), dtype=np.int64)
        _count_candle_problems(c.ts, c.open, c.high, c.low, c.close, c.volume, timeframe_ms, counts_array)
        counts = dict(zip(_COUNTS, counts_array.tolist(), strict=True))
    else:
        counts = _problem_counts(c, timeframe_ms)
    if timeframe_ms > TIMEFRAME_MS["1d"]:
        counts["misaligned"] = 0  # daily and longer candles need not open at a multiple of their length
    duplicates, non_monotonic, gaps, missing, nan_rows, zero_volume, invalid_ohlc, misaligned = (
        counts[name] for name in _COUNTS
    )

    problems: list[str] = []
    warnings: list[str] = []
    if rows < min_rows:
        problems.append(f"only {rows} candles, need {min_rows}")
    if non_monotonic:
        problems.append(f"{non_monotonic} step(s) back in time")
    if duplicates:
        problems.append(f"{duplicates} duplicate open time(s)")
    if gaps:
        problems.append(f"{gaps} gap(s), {missing} missing candle(s)")
    if nan_rows:
        problems.append(f"{nan_rows} row(s) with NaN/inf values")
    if invalid_ohlc:
        problems.append(f"{invalid_ohlc} row(s) with inconsistent OHLC")
    if misaligned:
        problems.append(f"{misaligned} open time(s) off the {timeframe_ms} ms grid")
    if zero_volume:
        message = f"{zero_volume} zero-volume candle(s)"
        if rows and zero_volume / rows > zero_volume_max_fraction:
            problems.append(message)
        else:
            warnings.append(message)
    return CandleReport(
        rows=rows,
        timeframe_ms=timeframe_ms,
        missing_candles=missing,
        gaps=gaps,
        duplicates=duplicates,
        non_monotonic=non_monotonic,
        nan_rows=nan_rows,
        zero_volume=zero_volume,
        misaligned=misaligned,
        invalid_ohlc=invalid_ohlc,
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def _problem_counts(c: Candles, timeframe_ms: int) -> dict[str, int]:
    """The counts behind ``check_candles`` (NumPy path)."""
    steps = np.diff(c.ts)
    gap_steps = steps[steps > timeframe_ms]
    prices = np.vstack([c.open, c.high, c.low, c.close]) if len(c) else np.empty((4, 0))
    with np.errstate(invalid="ignore"):
        invalid = (c.high < np.maximum(c.open, c.close)) | (c.low > np.minimum(c.open, c.close)) | (c.low <= 0)
        zero_volume = c.volume <= 0
    return {
        "duplicates": int(np.count_nonzero(steps == 0)),
        "non_monotonic": int(np.count_nonzero(steps < 0)),
        "gaps": int(gap_steps.size),
        "missing": int(np.sum(gap_steps // timeframe_ms - 1 + (gap_steps % timeframe_ms > 0))),
        "nan_rows": int(np.count_nonzero(~np.isfinite(prices).all(axis=0) | ~np.isfinite(c.volume))),
        "zero_volume": int(np.count_nonzero(zero_volume)),
        "invalid_ohlc": int(np.count_nonzero(invalid)),
        "misaligned": int(np.count_nonzero(c.ts % timeframe_ms)),
    }


@compiled.loop
def _count_candle_problems(
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    timeframe_ms: int,
    counts: np.ndarray,
) -> None:
    """``check_candles``' counts in one pass (compiled): duplicates, steps back, gaps, missing candles, NaN rows,
    zero volume, inconsistent OHLC, misaligned open times (in that order in ``counts``)."""
    for i in range(ts.shape[0]):
        if i > 0:
            step = ts[i] - ts[i - 1]
            if step == 0:
                counts[0] += 1
            elif step < 0:
                counts[1] += 1
            elif step > timeframe_ms:
                counts[2] += 1
                counts[3] += step // timeframe_ms - 1 + (1 if step % timeframe_ms > 0 else 0)
        o, h, lo, c, v = open_[i], high[i], low[i], close[i], volume[i]
        if not (np.isfinite(o) and np.isfinite(h) and np.isfinite(lo) and np.isfinite(c) and np.isfinite(v)):
            counts[4] += 1
        if v <= 0:
            counts[5] += 1
        top = np.nan if (np.isnan(o) or np.isnan(c)) else max(o, c)
        bottom = np.nan if (np.isnan(o) or np.isnan(c)) else min(o, c)
        if h < top or lo > bottom or lo <= 0:
            counts[6] += 1
        if ts[i] % timeframe_ms != 0:
            counts[7] += 1
