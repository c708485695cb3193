"""A worker process for the restart-safety test (``test_restart_safety.py``): executes one signal exactly as the
``signal.created`` consumer does and freezes at a chosen point until the test kills it with SIGKILL.

    python -m trading.tests.restart_child <signal_id> <phase> <marker_path>

Phases (where the process freezes):
- ``decided``: the risk manager and sizing decided and the Position + entry Order rows are written, inside the
  decision's transaction, before its commit;
- ``stored``: the decision committed (pending position), before the executor fills it;
- ``filling``: inside the fill's transaction, after the fill row is written, before its commit.

The market is a stand-in (last price 100, fixed clock) and events are not dispatched (no broker needed). The marker
file is written when the process reaches the phase; the test kills it then.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

FREEZE_SECONDS = 120  # the test kills the process long before


class _Market:
    name = "restart-child"

    def last_price(self, symbol: str) -> Decimal:
        return Decimal("100")

    def now(self) -> datetime:
        return datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


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

    stand_in = _Market()
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
    elif phase == "filling":
        real_fill = PaperExecutor._fill

        def fill_then_freeze(self, **kwargs):
            real_fill(self, **kwargs)
            _freeze(marker)

        PaperExecutor._fill = fill_then_freeze
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    tasks.execute_signal.run(signal_id)
    raise SystemExit(f"phase {phase!r} was never reached")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
