"""A worker process for the restart-safety test (``test_restart_safety.py``): executes one signal exactly as the
``signal.created`` consumer does and freezes at a chosen point until the test kills it with SIGKILL.

    python -m trading.tests.restart_child <signal_id> <phase> <marker_path>
    python -m trading.tests.restart_child <position_id> closing <marker_path>

Phases (where the process freezes):
- ``decided``: the risk manager and sizing decided and the Position + entry Order rows are written, inside the
  decision's transaction, before its commit;
- ``stored``: the decision committed (pending position), before the executor fills it;
- ``filling``: inside the fill's transaction, after the fill row is written, before its commit;
- ``closing``: the position monitor applies a candle that takes the stop of an open position and freezes inside
  that candle's transaction, after the exit order and fill rows are written, before the commit.

The market is a stand-in (last price 100, fixed clock) and events are not dispatched (no broker needed). The marker
file is written when the process reaches the phase; the test kills it then.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

FREEZE_SECONDS = 120  # the test kills the process long before


T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
STOP_CANDLE = (100.2, 100.5, 97.5, 98.0)  # the 12:00 5m candle: its low takes a 98 stop


class _Market:
    name = "restart-child"

    def __init__(self, now: datetime = T0):
        self.clock = now

    def last_price(self, symbol: str) -> Decimal:
        return Decimal("100")

    def now(self) -> datetime:
        return self.clock

    def now_ms(self) -> int:
        return int(self.clock.timestamp() * 1000)

    def ohlcv(self, symbol: str, timeframe: str, limit: int):
        import numpy as np

        from engine.candles import Candles

        one = np.array([1.0])
        o, h, low, c = STOP_CANDLE
        return Candles(
            ts=np.array([int(T0.timestamp() * 1000)], dtype=np.int64),
            open=o * one,
            high=h * one,
            low=low * one,
            close=c * one,
            volume=one,
        )


def _freeze(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    time.sleep(FREEZE_SECONDS)
    raise SystemExit("restart_child was not killed in time")


def main(signal_id: int, phase: str, marker: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from config import events
    from trading import market, services, tasks
    from trading.executors.paper import PaperExecutor

    stand_in = _Market(now=T0 + timedelta(minutes=5) if phase == "closing" else T0)
    market.market_data = lambda: stand_in
    events.publish = lambda event, **payload: None

    if phase == "decided":
        real_store = services._position_store

        def store_then_freeze(**kwargs):
            real_store(**kwargs)
            _freeze(marker)

        services._position_store = store_then_freeze
    elif phase == "stored":
        PaperExecutor.open_position = lambda self, *, position: _freeze(marker)
    elif phase in ("filling", "closing"):
        real_fill = PaperExecutor._fill

        def fill_then_freeze(self, **kwargs):
            real_fill(self, **kwargs)
            _freeze(marker)

        PaperExecutor._fill = fill_then_freeze
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    if phase == "closing":
        from trading.monitor import positions_monitor

        positions_monitor(market_data=stand_in)
    else:
        tasks.execute_signal.run(signal_id)
    raise SystemExit(f"phase {phase!r} was never reached")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
