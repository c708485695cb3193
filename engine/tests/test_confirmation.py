"""The 1h quorum: closed candles only, stale data, batch == single, hand-built trends."""

from __future__ import annotations

import numpy as np
import pytest

from engine.candles import Candles, resample
from engine.confirmation import CHECK_NAMES, hourly_checks, quorum, quorum_many
from engine.errors import InvalidParameters
from engine.strategy import StrategyParams
from engine.tests.conftest import random_walk_candles

PARAMS = StrategyParams()
H1 = 3_600_000


def trending_hours(n: int, *, step: float, volume_spike: bool = True) -> Candles:
    """A clean trend on 1h candles (rising when ``step > 0``), volume slowly fading (ratio < 1) except for a
    spike on the last candle."""
    ts = 1_700_000_000_000 // H1 * H1 + H1 * np.arange(n, dtype=np.int64)
    close = 100 + step * np.arange(n) + 0.3 * np.sin(np.arange(n))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.2
    low = np.minimum(open_, close) - 0.2
    volume = 2_000.0 - np.arange(n, dtype=float)
    if volume_spike:
        volume[-1] = 3_000.0
    return Candles(ts, open_, high, low, close, volume)


def test_rising_market_confirms_longs_not_shorts():
    c1h = trending_hours(120, step=0.5)
    at = int(c1h.ts[-1]) + H1  # the close of the last hour
    long = quorum(c1h, "long", at, PARAMS)
    short = quorum(c1h, "short", at, PARAMS)
    assert long.passed == CHECK_NAMES and long.count == 4 and long.ok
    assert short.passed == ("volume",) and short.count == 1 and not short.ok


def test_falling_market_confirms_shorts():
    c1h = trending_hours(120, step=-0.5, volume_spike=False)
    conf = quorum(c1h, -1, int(c1h.ts[-1]) + H1, PARAMS)
    assert conf.passed == ("trend", "momentum", "structure") and conf.ok


def test_only_hours_closed_at_decision_time_count():
    c1h = trending_hours(120, step=0.5)
    last_close = int(c1h.ts[-1]) + H1
    # 1 ms before the last hour closes, the previous hour decides (its volume is ordinary)
    assert "volume" not in quorum(c1h, "long", last_close - 1, PARAMS).passed
    assert "volume" in quorum(c1h, "long", last_close, PARAMS).passed
    batch = quorum_many(c1h, np.array([1, 1]), np.array([last_close - 1, last_close]), PARAMS)
    assert batch.h1_index.tolist() == [len(c1h) - 2, len(c1h) - 1]


def test_future_hours_never_change_the_answer():
    base = random_walk_candles(4 * 300, seed=11)
    c1h = resample(base, 60)
    rng = np.random.default_rng(0)
    sides = rng.choice([-1, 1], size=200)
    at = rng.integers(int(c1h.ts[40]), int(c1h.ts[-1]), size=200) // 900_000 * 900_000
    full = quorum_many(c1h, sides, at, PARAMS)
    for q in range(0, 200, 9):
        truncated = c1h.closed_at(int(at[q]), H1)
        assert quorum(truncated, int(sides[q]), int(at[q]), PARAMS) == full.confirmation(q)


def test_batch_equals_single_queries():
    c1h = resample(random_walk_candles(4 * 200, seed=5, vol=0.01), 60)
    sides = np.array([1, -1, 0, 1, -1])
    at = int(c1h.ts[-1]) + H1 - np.array([0, 0, 0, 5 * H1, 9 * H1 + 900_000])
    batch = quorum_many(c1h, sides, at, PARAMS)
    for q, (side, ts) in enumerate(zip(sides, at, strict=True)):
        if side == 0:
            assert batch.count[q] == 0 and not batch.ok[q]
            continue
        single = quorum(c1h, int(side), int(ts), PARAMS)
        assert single == batch.confirmation(q)


def test_stale_or_missing_hourly_data_confirms_nothing():
    c1h = trending_hours(120, step=0.5)
    far_later = int(c1h.ts[-1]) + 3 * H1
    assert quorum(c1h, "long", far_later, PARAMS).count == 0
    assert quorum(c1h, "long", int(c1h.ts[0]), PARAMS).count == 0  # before the first hour closed
    assert quorum(Candles.empty(), "long", far_later, PARAMS).count == 0


def test_quorum_threshold_is_a_parameter():
    c1h = trending_hours(120, step=-0.5, volume_spike=False)
    at = int(c1h.ts[-1]) + H1
    assert quorum(c1h, "short", at, StrategyParams(quorum=3)).ok
    assert not quorum(c1h, "short", at, StrategyParams(quorum=4)).ok


def test_hourly_checks_shape_and_warm_up():
    c1h = trending_hours(60, step=0.5)
    checks = hourly_checks(c1h, PARAMS)
    assert checks.long.shape == checks.short.shape == (60, 4)
    assert not checks.long[: PARAMS.ema_slow - 1, 0].any()  # trend needs the slow EMA
    assert not checks.long[: 2 * PARAMS.h1_structure_bars - 1, 3].any()


def test_bad_side_rejected():
    with pytest.raises(InvalidParameters):
        quorum(trending_hours(30, step=1), "up", 0, PARAMS)
