"""The replay driver: advance the replay clock over the bundled data and, at each step, run the scan and the
outcome tracker exactly as the beat would (the same services: ``scan_run_now`` = ``scan_start`` + every
``scan_batch_run``, then ``signal_track_outcomes``). Used by ``manage.py replay`` and ``manage.py demo``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from engine.strategy import SIGNAL_TIMEFRAME_MS, bars_needed
from signals.display import signal_card, signal_outcome_line
from signals.market_data import get_market_data, market_data_override
from signals.market_data.base import datetime_to_ms, ms_to_datetime
from signals.market_data.replay import ReplayMarketData
from signals.models import Signal
from signals.outcomes import signal_track_outcomes
from signals.scanning import scan_run_now, strategy_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayStep:
    at: datetime
    scan_run_id: int
    created: list[Signal]
    closed: list[Signal]


@dataclass
class ReplayReport:
    start: datetime
    end: datetime
    steps: int = 0
    signals: list[Signal] = field(default_factory=list)  # created during this run, in order
    closed: list[Signal] = field(default_factory=list)  # closed during this run (may include older signals)
    skipped_reasons: Counter = field(default_factory=Counter)  # "symbol: reason" (first 60 chars) → steps
    elapsed_seconds: float = 0.0

    def merged(self, other: ReplayReport) -> ReplayReport:
        """This run followed by ``other`` (a replay in several windows) as one report."""
        return ReplayReport(
            start=self.start,
            end=other.end,
            steps=self.steps + other.steps,
            signals=self.signals + other.signals,
            closed=self.closed + other.closed,
            skipped_reasons=self.skipped_reasons + other.skipped_reasons,
            elapsed_seconds=self.elapsed_seconds + other.elapsed_seconds,
        )

    def refreshed_signals(self) -> list[Signal]:
        ids = [signal.pk for signal in self.signals]
        by_id = Signal.objects.select_related("symbol").in_bulk(ids)
        return [by_id[pk] for pk in ids if pk in by_id]

    def summary_lines(self) -> list[str]:
        signals = self.refreshed_signals()
        lines = [
            f"Replay {self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC: {self.steps} scan(s), "
            f"{len(signals)} signal(s), {self.elapsed_seconds:.1f} s",
            "Outcomes:",
        ]
        lines += [f"  {signal_outcome_line(signal)}" for signal in signals] or ["  (no signals)"]
        closed = [s for s in signals if s.status == Signal.Status.CLOSED]
        if closed:
            total = sum(s.outcome_pnl_pct for s in closed)
            wins = sum(1 for s in closed if s.outcome_pnl_pct > 0)
            counts = ", ".join(f"{k}={v}" for k, v in sorted(Counter(s.outcome for s in closed).items()))
            lines.append(f"Closed {len(closed)}: {counts}; winners {wins}; sum of PnL {total:+.2f}% (unleveraged)")
        return lines


def _replay_market_data() -> ReplayMarketData:
    market_data = get_market_data()
    if not isinstance(market_data, ReplayMarketData):
        raise RuntimeError(
            f"replay_run needs MARKET_DATA_SOURCE=replay (it is {settings.MARKET_DATA_SOURCE!r}); "
            "it must never drive a live market-data source"
        )
    return market_data


def replay_default_window(market_data: ReplayMarketData | None = None) -> tuple[datetime, datetime]:
    """From the first moment a market has warmed up (``bars_needed`` closed 15m candles) to the end of the data."""
    market_data = market_data or _replay_market_data()
    warmup_ms = bars_needed(strategy_params()) * SIGNAL_TIMEFRAME_MS
    first = market_data.dataset.first_ms + warmup_ms
    first += (-first) % SIGNAL_TIMEFRAME_MS
    return ms_to_datetime(first), ms_to_datetime(market_data.dataset.last_ms)


def replay_run(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    step: timedelta = timedelta(minutes=15),
    on_step: Callable[[ReplayStep], None] | None = None,
) -> ReplayReport:
    """Advance a replay clock of its own from ``start`` to ``end`` by ``step``; scan + track outcomes at each step.
    The shared replay clock (``replay:clock_ms``, read by the workers, PnL windows and backtests) is never moved.

    Times where no market has data are jumped over (the bundled 2018 spot and 2021 perpetual windows do not touch).
    The final step also closes what the tracker can close at ``end``. ``on_step`` is called after every step.
    Re-running over the same window creates no duplicate: those signals already exist (``dedupe_key``).
    """
    market_data = _replay_market_data().with_own_clock()  # never rewinds the shared (live) replay clock
    default_start, default_end = replay_default_window(market_data)
    start = start or default_start
    end = end or default_end
    step_ms = int(step.total_seconds() * 1000)
    if step_ms <= 0:
        raise ValueError("step must be positive")
    end_ms = datetime_to_ms(end)
    report = ReplayReport(start=start, end=end)
    began = time.perf_counter()
    with market_data_override(market_data):  # what runs in this thread (eager tasks) reads the run's clock
        try:
            _replay_steps(market_data, report, start=start, end_ms=end_ms, step_ms=step_ms, on_step=on_step)
        finally:
            market_data.reset_clock()
    report.elapsed_seconds = time.perf_counter() - began
    logger.info("replay: %d steps, %d signals, %.1f s", report.steps, len(report.signals), report.elapsed_seconds)
    return report


def _replay_steps(
    market_data: ReplayMarketData,
    report: ReplayReport,
    *,
    start: datetime,
    end_ms: int,
    step_ms: int,
    on_step: Callable[[ReplayStep], None] | None,
) -> None:
    now_ms = market_data.advance_to(start)
    while now_ms <= end_ms:
        run, created = scan_run_now(market_data=market_data, now_ms=now_ms)
        closed = signal_track_outcomes(market_data=market_data, now_ms=now_ms)
        report.steps += 1
        report.signals += created
        report.closed += closed
        for symbol, reason in run.skipped.items():
            report.skipped_reasons[f"{symbol}: {reason[:60]}"] += 1
        if on_step is not None:
            on_step(ReplayStep(at=ms_to_datetime(now_ms), scan_run_id=run.pk, created=created, closed=closed))
        now_ms = market_data.step(step_ms)


def replay_print_step(write: Callable[[str], None]) -> Callable[[ReplayStep], None]:
    """An ``on_step`` callback printing every new signal as a card and every close as one line."""

    def on_step(replay_step: ReplayStep) -> None:
        for signal in replay_step.created:
            write(signal_card(signal))
        for signal in replay_step.closed:
            write(f"  ↳ closed: {signal_outcome_line(signal)}")

    return on_step
