"""Concurrent executions of signals for the SAME user on PostgreSQL (several Celery pool processes or threads): no
deadlock, every position opens exactly once.

Each thread has its own database connection, like one pool process of a worker. Two interleavings used to deadlock:

- symbol row: ``PaperExecutor.open_position`` locked its position FOR UPDATE *with the joined symbol row*
  (``select_for_update().select_related("symbol")``), while ``position_prepare`` of another signal of the same user
  held the user row FOR UPDATE and, at its COMMIT, needed a KEY SHARE lock on that symbol row for the deferred
  foreign-key check of its new position; the entry's COMMIT in turn needed a KEY SHARE lock on the user row for its
  new ``DailyRiskState`` (first event of the day).
- paper account: ``position_prepare`` (user row FOR UPDATE) raising the account's peak waited for the paper account
  row the entry held, whose COMMIT needed the KEY SHARE lock on the user row.

Fix: ``position_prepare`` holds the user row FOR NO KEY UPDATE, which still excludes the other executions of that
user but lets the foreign-key checks (KEY SHARE) of other transactions through — this alone breaks both cycles. And
the paper executor locks only its position row (``select_for_update(of=("self",))``): the symbol row is never
written by trading, and locking it serialised every entry and exit on a symbol with the commits of all users'
executions on it (with only this change, the paper-account interleaving still deadlocks).

Since then the risk manager allows one position per user and symbol, so each signal here is on its own symbol (the
symbol-row cycle needed two positions of one user on one symbol and cannot form any more; the test still proves the
user-row locking lets the second execution through while the first entry holds its rows).

The first two tests force each interleaving (the entry pauses, holding its locks, until the other execution is
blocked on a lock or done); the third runs the real consumer (``signal_execute``) on four threads at once, as four
pool processes would, with no pause at all.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections

from signals.tests.factories import SignalFactory, SymbolFactory
from trading import intents, ledger, services
from trading.executors.paper import PaperExecutor
from trading.models import Fill, PaperAccount, Position, TradeRefusal
from trading.tests.paper_fixtures import paper_auto_trader

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
JOIN_TIMEOUT = 60  # seconds; PostgreSQL reports a deadlock after deadlock_timeout (1 s by default)
BASES = ("XRP", "ADA", "DOGE", "LTC", "DOT", "TRX")  # distinct bases, correlation filter off


@pytest.fixture(autouse=True)
def dispatched(monkeypatch) -> list[str]:
    """Events the executions announced (after their commits), recorded instead of running their consumers."""
    events: list[str] = []
    monkeypatch.setattr("config.events.dispatch_now", lambda event, payload: events.append(event))
    return events


def _signals(n: int) -> list:
    # one symbol per signal: the risk manager allows one position per user and symbol
    symbols = [
        SymbolFactory(
            symbol=f"{base}/USDT:USDT",
            base=base,
            tick_size=Decimal("0.0001"),
            step_size=Decimal("1"),
            min_quantity=Decimal("1"),
            min_notional=Decimal("5"),
        )
        for base in BASES
    ]
    kinds = [(side, source) for source in ("technical", "news", "flow") for side in ("long", "short")][:n]
    signals = []
    for (side, source), symbol in zip(kinds, symbols, strict=False):
        sign = 1 if side == "long" else -1
        signals.append(
            SignalFactory(
                symbol=symbol,
                side=side,
                source=source,
                entry=Decimal("1.0"),
                stop=Decimal("1.0") - sign * Decimal("0.05"),
                tp1=Decimal("1.0") + sign * Decimal("0.05"),
                tp2=Decimal("1.0") + sign * Decimal("0.1"),
                atr=Decimal("0.03"),
                expires_at=None,
            )
        )
    return signals


def _executor(*, user, mode: str = "paper", price: Decimal = Decimal("1.0"), now: datetime = NOW) -> PaperExecutor:
    return PaperExecutor(user=user, price_of=lambda symbol: price, clock=lambda: now)


class Worker(threading.Thread):
    """Runs ``target`` on its own database connection (closed at the end); keeps its result or exception."""

    def __init__(self, name: str, target):
        super().__init__(name=name, daemon=True)
        self.target, self.result, self.error = target, None, None

    def run(self):
        try:
            self.result = self.target()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()


def _backends_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _race(*, user, first, second, monkeypatch, second_price: Decimal = Decimal("1.0")) -> tuple[Worker, Worker]:
    """Execute ``first`` for ``user`` and, while its entry transaction holds its locks (after the paper account and
    the day's risk state were written, before COMMIT), execute ``second``; the entry commits once ``second`` is
    blocked on a lock or done."""
    holding, go_on = threading.Event(), threading.Event()
    real_record = ledger.daily_risk_record

    def record_then_pause(**kwargs):
        state = real_record(**kwargs)
        if threading.current_thread().name == "first" and kwargs.get("opened"):
            holding.set()
            go_on.wait(timeout=10)
        return state

    monkeypatch.setattr(ledger, "daily_risk_record", record_then_pause)
    a = Worker(
        "first", lambda: services.signal_execute_for_user(user=user, signal=first, executor=_executor(user=user))
    )
    b = Worker(
        "second",
        lambda: services.signal_execute_for_user(
            user=user, signal=second, executor=_executor(user=user, price=second_price)
        ),
    )
    a.start()
    assert holding.wait(timeout=JOIN_TIMEOUT), f"the first entry never reached its fill: {a.error!r}"
    b.start()
    deadline = time.monotonic() + 10
    while b.is_alive() and _backends_waiting_on_a_lock() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    go_on.set()
    for worker in (a, b):
        worker.join(timeout=JOIN_TIMEOUT)
        assert not worker.is_alive(), f"{worker.name} execution still blocked after {JOIN_TIMEOUT} s"
    return a, b


def _assert_both_open(user, signals, *workers):
    errors = {w.name: repr(w.error) for w in workers if w.error is not None}
    assert not errors, f"concurrent same-user executions failed: {errors}"
    positions = Position.objects.filter(user=user)
    assert sorted(positions.values_list("signal_id", flat=True)) == sorted(s.pk for s in signals)
    assert set(positions.values_list("status", flat=True)) == {"open"}
    assert Fill.objects.filter(position__user=user).count() == len(signals)


def test_entry_holding_its_position_while_the_next_signal_is_decided(transactional_db, postgres_database, monkeypatch):
    """Symbol-row interleaving: the entry of signal 1 holds its position row; signal 2 is decided and stored."""
    user = paper_auto_trader()
    signals = _signals(2)
    a, b = _race(user=user, first=signals[0], second=signals[1], monkeypatch=monkeypatch)
    _assert_both_open(user, signals, a, b)


def test_entry_holding_the_paper_account_while_the_next_signal_raises_the_peak(
    transactional_db, postgres_database, monkeypatch
):
    """Paper-account interleaving: the price rose since the user's first position opened, so deciding signal 2
    raises the equity peak on the paper account row that the entry of signal 1 holds."""
    user = paper_auto_trader()
    signals = _signals(3)
    yesterday = _executor(user=user, now=NOW - timedelta(days=1))  # today's first entry still records a new day
    services.signal_execute_for_user(user=user, signal=signals[0], executor=yesterday)  # a long, open
    peak = PaperAccount.objects.get(user=user).peak_equity
    a, b = _race(user=user, first=signals[2], second=signals[1], monkeypatch=monkeypatch, second_price=Decimal("1.02"))
    _assert_both_open(user, signals, a, b)
    assert PaperAccount.objects.get(user=user).peak_equity > peak


@pytest.mark.slow
def test_four_consumers_executing_signals_for_the_same_users_at_once(transactional_db, postgres_database):
    """The real consumer, four at once (four pool processes, each executing one signal for every user in the same
    order): every (user, signal) position exists exactly once and is open, no execution failed."""
    users = [paper_auto_trader() for _ in range(6)]
    signals = _signals(4)
    workers = [
        Worker(f"signal-{s.pk}", lambda s=s: intents.signal_execute(signal_id=s.pk, executor_factory=_executor))
        for s in signals
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=JOIN_TIMEOUT)
        assert not worker.is_alive(), f"{worker.name} still running after {JOIN_TIMEOUT} s"
    assert not [w.error for w in workers if w.error is not None]
    counts = [w.result for w in workers]
    assert all(c == {"opened": len(users), "refused": 0, "skipped": 0, "failed": 0, "flipped": 0} for c in counts), (
        counts
    )
    assert not TradeRefusal.objects.exists()
    pairs = list(Position.objects.values_list("user_id", "signal_id"))
    assert sorted(pairs) == sorted((u.pk, s.pk) for u in users for s in signals)
    assert set(Position.objects.values_list("status", flat=True)) == {"open"}
