"""The replay clocks: a running clock for the production-like processes (advances with the wall clock at
REPLAY_SPEED, shared through the cache, jumps over the years without data, holds at the end) and private stepped
clocks for ``manage.py replay`` / ``manage.py demo`` that never move the running processes' clock; backtests read
the recorded history whatever any clock shows."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command

from analytics.models import BacktestRun
from signals.market_data import get_market_data, market_data_override, reset_market_data
from signals.market_data.replay import (
    RUNNING_CLOCK_CACHE_KEY,
    ReplayMarketData,
    RunningReplayClock,
    load_dataset,
)

ROOT = Path(__file__).resolve().parents[2]
SPOT_END_MS = 1517288100000  # 2018-01-30 04:55, the 2018 spot data's last close
PERP_START_MS = 1636934400000  # 2021-11-15 00:00, the perpetual's first candle


class FakeWall:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def running(cache, wall, *, speed=900.0, start_ms=SPOT_END_MS - 3_600_000):
    dataset = load_dataset(str(django_settings.REPLAY_DATA_DIR))
    return ReplayMarketData(
        dataset,
        cache=cache,
        prices=None,
        clock=RunningReplayClock(
            cache=lambda: cache,
            key=RUNNING_CLOCK_CACHE_KEY,
            dataset=dataset,
            speed=speed,
            start_ms=start_ms,
            wall_clock=wall,
        ),
    )


def test_the_running_clock_advances_with_the_wall_clock_and_every_process_reads_the_same_time():
    cache, wall = LocMemCache("clock-shared", {}), FakeWall()
    web, worker = running(cache, wall), running(cache, wall)
    start = web.now_ms()
    assert start == SPOT_END_MS - 3_600_000 == worker.now_ms()
    wall.now += 2.0  # two wall seconds at 900x: two 15m candles
    assert web.now_ms() == worker.now_ms() == start + 2 * 900_000
    # a process started later with another speed or start reads the anchor the first one stored
    late = running(cache, wall, speed=10.0, start_ms=PERP_START_MS)
    assert late.now_ms() == web.now_ms()


def test_the_running_clock_jumps_the_hole_between_datasets_and_holds_at_the_end():
    cache, wall = LocMemCache("clock-hole", {}), FakeWall()
    market_data = running(cache, wall)
    assert market_data.now_ms() == SPOT_END_MS - 3_600_000  # the first read fixes the anchor
    wall.now += 4.0 + 2.0  # one hour to the end of the 2018 data, then 30 minutes more
    assert market_data.now_ms() == PERP_START_MS + 30 * 60_000  # not 3.8 years of empty candles
    assert [m.symbol for m in market_data.markets()] == ["XRP/USDT:USDT"]
    wall.now += 10_000.0
    assert market_data.now() == datetime(2021, 11, 21, 22, 35, tzinfo=UTC)  # the end of the data, held


@pytest.mark.django_db
def test_a_replay_command_walks_its_own_clock_and_never_moves_the_running_one(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "clock-cmd"}}
    settings.REPLAY_SPEED = 900.0
    settings.REPLAY_START = "2021-11-16T00:00"
    reset_market_data()
    try:
        live = get_market_data()
        assert live.clock.kind == "running"
        before = live.now_ms()
        assert datetime(2021, 11, 16, tzinfo=UTC) <= live.now() < datetime(2021, 11, 16, 1, tzinfo=UTC)
        with market_data_override(live.with_own_clock()) as private:
            assert get_market_data() is private and private.clock.kind == "stepped"
        call_command("replay", start="2018-01-12T12:45", end="2018-01-12T13:15", stdout=StringIO())
        after = get_market_data()
        assert after is live and before <= after.now_ms() < before + 3_600_000  # not rewound to 2018
    finally:
        reset_market_data()


@pytest.mark.django_db
def test_the_readme_backtest_works_after_a_replay_moved_a_clock_back_to_2018(settings, replay_market_data):
    replay_market_data.advance_to(datetime(2018, 1, 13, tzinfo=UTC))  # e.g. a replay of 2018 left the clock there
    call_command("replay", start="2018-01-12T12:45", end="2018-01-12T13:00", stdout=StringIO(), quiet=True)
    out = StringIO()
    call_command("backtest", symbols="XRP/USDT:USDT", days=5, no_progress=True, stdout=out, stderr=StringIO())
    run = BacktestRun.objects.get()
    assert run.status == BacktestRun.Status.SUCCEEDED and run.equity_curve.name.endswith(".png")
    assert run.metrics["range_end"].startswith("2021-11-21")
    assert "no 15m candles" not in out.getvalue()


def test_the_beat_follows_the_market_clock_on_a_running_replay():
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: s.CELERY_BEAT_SCHEDULE[k]['schedule'] for k in ('scan-markets', 'poll-news', "
        "'flow-monitor', 'heartbeat')}))"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "MARKET_DATA_SOURCE": "replay",
        "REPLAY_SPEED": "60",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == '{"scan-markets": 15.0, "poll-news": 1.0, "flow-monitor": 1.0, "heartbeat": 60.0}'
    too_fast = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "REPLAY_SPEED": "5000"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert too_fast.returncode != 0 and "REPLAY_SPEED=5000" in too_fast.stderr
