"""The offline replay: the replay clock driven faster than real time through the same scan and outcome services the
beat runs, and ``manage.py replay`` printing signals as a user sees them plus the outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from signals.models import ScanRun, Signal
from signals.replay import replay_default_window, replay_run

pytestmark = [pytest.mark.usefixtures("isolated_signals_env"), pytest.mark.django_db]

START = datetime(2018, 1, 12, 12, 0, tzinfo=UTC)
END = datetime(2018, 1, 13, 10, 0, tzinfo=UTC)  # ETH/BTC long at 13:00 reaches TP2 at 08:45 next day


@pytest.mark.slow
def test_replay_runs_the_scanner_and_the_tracker_over_the_window(replay_market_data, dispatched):
    steps = []
    live_moment = datetime(2021, 11, 20, 8, 0, tzinfo=UTC)
    replay_market_data.advance_to(live_moment)  # the shared clock the workers, PnL windows and backtests read
    report = replay_run(start=START, end=END, on_step=steps.append)
    assert report.steps == len(steps) == (END - START) // timedelta(minutes=15) + 1
    assert steps[0].at == START and steps[-1].at == END  # the run's own clock moved, not the wall clock
    assert ScanRun.objects.count() == report.steps
    assert replay_market_data.now() == live_moment  # ... and never the shared one (it is not rewound to 2018)
    signals = report.refreshed_signals()
    eth = next(s for s in signals if s.symbol.symbol == "ETH/BTC" and s.side == "long")
    assert eth.created_at == datetime(2018, 1, 12, 13, 0, tzinfo=UTC)
    assert (eth.outcome, str(eth.outcome_pnl_pct)) == ("tp2", "2.2536")
    # a day of 15m scans over six markets takes seconds, not a day
    assert report.elapsed_seconds < 60
    # replaying the same window again creates no duplicate
    count = Signal.objects.count()
    again = replay_run(start=START, end=END)
    assert again.signals == [] and Signal.objects.count() == count


def test_default_window_starts_once_markets_have_warmed_up(replay_market_data):
    start, end = replay_default_window(replay_market_data)
    assert start.minute % 15 == 0 and start > datetime(2018, 1, 10, 4, 55, tzinfo=UTC)
    assert end == datetime(2021, 11, 21, 22, 35, tzinfo=UTC)


def test_replay_command_prints_signal_cards_and_outcomes(replay_market_data, dispatched):
    out = StringIO()
    call_command("replay", start="2018-01-12T12:45", end="2018-01-12T13:15", stdout=out)
    text = out.getvalue()
    assert "🟢 LONG ETH/BTC" in text
    for label in ("entry 0.09097993", "stop  0.08961307", "TP1   0.09234679", "TP2   0.09371365"):
        assert label in text
    assert "risk  low   checks passed (4/4): 1h trend, 1h volume, 1h momentum, 1h structure" in text
    assert "Replay 2018-01-12 12:45 → 2018-01-12 13:15 UTC: 3 scan(s), 1 signal(s)" in text
    assert "Outcomes:" in text and "ETH/BTC          long  2018-01-12 13:00  open" in text


def test_replay_refuses_a_live_market_data_source(settings):
    settings.MARKET_DATA_SOURCE = "live"
    with pytest.raises(CommandError):
        call_command("replay", stdout=StringIO())
