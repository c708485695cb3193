"""Restart safety with a real worker process killed by SIGKILL (no cleanup, no ``finally``, no rollback by Python).

A subprocess executes the signal as the ``signal.created`` consumer does and freezes at one point of the execution
(``restart_child.py``); the test kills it with SIGKILL there, looks at what the database kept, then redelivers the
task (``acks_late`` + ``reject_on_worker_lost``: the broker hands it to the next worker) and checks that exactly one
position with exactly one entry order and one fill exists — never zero, never two — also after one more delivery.
"""

from __future__ import annotations

import os
import signal as os_signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from trading import tasks
from trading.models import Fill, Order, PaperAccount, Position

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("paper_settings")]

REPO = Path(__file__).resolve().parents[2]
MARKER_TIMEOUT_SECONDS = 60


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _kill_worker_at(phase: str, target_id: str, tmp_path: Path) -> None:
    """Start the worker, wait until it reached ``phase``, SIGKILL it, reap it."""
    marker = tmp_path / f"{phase}.reached"
    log = tmp_path / f"{phase}.log"
    env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "trading.tests.restart_child", target_id, phase, str(marker)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + MARKER_TIMEOUT_SECONDS
            while not marker.exists():
                if child.poll() is not None:
                    pytest.fail(f"worker exited ({child.returncode}) before {phase}:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker never reached {phase}:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            assert marker.read_text() == str(child.pid)
            os.kill(child.pid, os_signal.SIGKILL)
            assert child.wait(timeout=10) == -os_signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)


@pytest.fixture
def vendor_check():
    if connection.vendor != "postgresql":
        pytest.skip("the killed worker needs a database another process can reach (PostgreSQL)")


@pytest.mark.usefixtures("vendor_check")
@pytest.mark.parametrize("phase", ["decided", "stored", "filling"])
def test_sigkill_never_loses_nor_doubles_a_position(phase, tmp_path, market, published):
    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")

    _kill_worker_at(phase, str(signal.pk), tmp_path)

    # what the killed worker left behind
    positions = list(Position.objects.filter(user=user, signal=signal))
    if phase == "decided":  # killed before the decision's commit: nothing at all, the redelivery decides again
        assert positions == [] and not Order.objects.exists()
    else:  # the decision committed: one pending position whose entry order was never filled
        assert [(p.status, p.quantity) for p in positions] == [("pending", Decimal("25"))]
        assert list(Order.objects.values_list("state", flat=True)) == ["new"]
        assert not Fill.objects.exists()
    assert not PaperAccount.objects.filter(user=user).exclude(balance=settings.PAPER_STARTING_BALANCE).exists()

    # the broker redelivers the unacknowledged task to a fresh worker (this process), twice for good measure
    assert tasks.execute_signal.run(signal.pk)["opened"] == 1
    tasks.execute_signal.run(signal.pk)
    position = Position.objects.get(user=user, signal=signal)
    assert position.status == "open" and position.quantity == Decimal("25")
    assert list(Order.objects.values_list("client_order_id", "state")) == [(f"P{signal.pk}U{user.pk}Lentry", "filled")]
    fill = Fill.objects.get()
    assert fill.price == position.entry_price == Decimal("100.1")
    assert PaperAccount.objects.get(user=user).balance == settings.PAPER_STARTING_BALANCE - fill.fee
    assert [e for e, _ in published].count("position.opened") == 1


@pytest.mark.usefixtures("vendor_check")
def test_sigkill_inside_an_exit_neither_loses_nor_doubles_it(tmp_path, market, published):
    """The monitor's worker dies after writing the stop-loss order and fill, before the candle's commit: the candle
    is re-applied as a whole by the next pass — one exit, booked once."""
    from trading import services
    from trading.monitor import positions_monitor
    from trading.tests.paper_fixtures import T0

    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    market.clock = T0
    position = services.signal_execute_for_user(user=user, signal=signal)
    balance = PaperAccount.objects.get(user=user).balance

    _kill_worker_at("closing", str(position.pk), tmp_path)

    position.refresh_from_db()
    assert position.status == "open" and position.monitored_until_ts is None
    assert list(Order.objects.values_list("leg", flat=True)) == ["entry"] and Fill.objects.count() == 1
    assert PaperAccount.objects.get(user=user).balance == balance

    market.add_candle(signal.symbol.symbol, T0, 100.2, 100.5, 97.5, 98.0)  # the candle the child saw
    market.clock = T0 + timedelta(minutes=5)
    assert positions_monitor(market_data=market).closed == 1
    assert positions_monitor(market_data=market).closed == 0
    position.refresh_from_db()
    assert position.status == "closed" and position.close_reason == "sl"
    exit_fill = Fill.objects.get(order__leg="sl")
    assert exit_fill.price == Decimal("97.902")
    assert PaperAccount.objects.get(user=user).balance == balance + exit_fill.realised_pnl - exit_fill.fee
    assert [e for e, _ in published].count("position.closed") == 1
