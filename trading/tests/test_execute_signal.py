"""The ``signal.created`` consumer: eligible users, idempotency and restart safety."""

from decimal import Decimal

import pytest

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from trading import intents, services, tasks
from trading.executors.paper import PaperExecutor
from trading.models import Fill, Order, Position
from trading.tests.paper_fixtures import T0

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]


def _signal(market, **kwargs):
    signal = SignalFactory(**kwargs)
    market.prices[signal.symbol.symbol] = Decimal("100")
    return signal


def test_task_is_registered_on_the_trade_queue_with_late_acks():
    task = tasks.execute_signal
    assert task.name == "trading.tasks.execute_signal"
    assert task.acks_late is True and task.reject_on_worker_lost is True
    assert task.queue == "trade"
    from django.conf import settings

    assert "trading.tasks.execute_signal" in settings.DOMAIN_EVENT_CONSUMERS["signal.created"]


def test_opens_for_every_eligible_user_only(market, published):
    eligible = [TelegramUserFactory(auto_trading_enabled=True) for _ in range(3)]
    TelegramUserFactory(auto_trading_enabled=False)
    TelegramUserFactory(auto_trading_enabled=True, is_banned=True)
    signal = _signal(market)
    counts = tasks.execute_signal.run(signal.pk)
    assert counts == {"opened": 3, "refused": 0, "skipped": 0, "failed": 0, "flipped": 0}
    assert set(Position.objects.values_list("user_id", flat=True)) == {u.pk for u in eligible}
    # a second delivery of the same event changes nothing
    tasks.execute_signal.run(signal.pk)
    assert Position.objects.count() == 3 and Fill.objects.count() == 3
    assert [e for e, _ in published].count("position.opened") == 3


def test_closed_or_expired_signals_are_skipped(market):
    TelegramUserFactory(auto_trading_enabled=True)
    closed = _signal(market, status="closed")
    expired = _signal(market, expires_at=T0)
    assert tasks.execute_signal.run(closed.pk)["skipped"] == 1
    assert tasks.execute_signal.run(expired.pk)["skipped"] == 1
    assert not Position.objects.exists()


def test_one_users_failure_does_not_stop_the_others(market, monkeypatch):
    a = TelegramUserFactory(auto_trading_enabled=True)
    b = TelegramUserFactory(auto_trading_enabled=True)
    original = PaperExecutor.open_position

    def flaky(self, *, position):
        if position.user_id == a.pk:
            raise RuntimeError("boom")
        return original(self, position=position)

    monkeypatch.setattr(PaperExecutor, "open_position", flaky)
    counts = tasks.execute_signal.run(_signal(market).pk)
    assert counts["opened"] == 1 and counts["failed"] == 1
    assert Position.objects.get(user=b).status == "open"


def test_a_database_deadlock_for_one_user_is_retried_not_lost(market, monkeypatch):
    from django.db import OperationalError

    a = TelegramUserFactory(auto_trading_enabled=True)
    b = TelegramUserFactory(auto_trading_enabled=True)
    original = services.signal_execute_for_user
    failures = {a.pk: 1}

    def deadlocked_once(*, user, signal, executor):
        if failures.get(user.pk):
            failures[user.pk] -= 1
            raise OperationalError("deadlock detected")
        return original(user=user, signal=signal, executor=executor)

    monkeypatch.setattr(services, "signal_execute_for_user", deadlocked_once)
    signal = _signal(market)
    assert OperationalError in tasks.execute_signal.autoretry_for
    with pytest.raises(OperationalError):  # re-raised after the others were served, so the task retries
        intents.signal_execute(signal_id=signal.pk)
    assert list(Position.objects.values_list("user_id", flat=True)) == [b.pk]
    counts = intents.signal_execute(signal_id=signal.pk)  # the retry: b's position is found again, a's opens
    assert counts["failed"] == 0
    assert sorted(Position.objects.values_list("user_id", flat=True)) == sorted([a.pk, b.pk])


def test_crash_after_decision_before_store_neither_loses_nor_doubles(market, monkeypatch):
    """The worker dies between "position decided" and "position stored": nothing was committed; the redelivered task
    decides again and stores exactly one position."""
    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = _signal(market)
    real_store = services._position_store
    calls = {"n": 0}

    def store_then_die(**kwargs):
        calls["n"] += 1
        position = real_store(**kwargs)  # the rows are written inside the decision's transaction…
        if calls["n"] == 1:
            raise SystemExit("worker killed")  # …and the worker dies before the commit
        return position

    monkeypatch.setattr(services, "_position_store", store_then_die)
    with pytest.raises(SystemExit):
        tasks.execute_signal.run(signal.pk)
    assert not Position.objects.exists() and not Order.objects.exists()  # rolled back, nothing half-stored
    tasks.execute_signal.run(signal.pk)  # acks_late: the broker redelivers
    position = Position.objects.get(user=user, signal=signal)
    assert position.status == "open" and position.orders.count() == 1 and position.fills.count() == 1


def test_crash_after_store_before_fill_resumes_the_pending_position(market, monkeypatch):
    """The worker dies after the decision committed but before the (simulated) fill: the re-run finds the pending
    position and fills it once; the entry order keeps its client order id."""
    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = _signal(market)

    def die(self, *, position):
        raise SystemExit("worker killed")

    with monkeypatch.context() as m:
        m.setattr(PaperExecutor, "open_position", die)
        with pytest.raises(SystemExit):
            tasks.execute_signal.run(signal.pk)
    pending = Position.objects.get(user=user, signal=signal)
    assert pending.status == "pending"
    cid = pending.orders.get().client_order_id
    market.prices[signal.symbol.symbol] = Decimal("100.2")  # the market moved meanwhile
    tasks.execute_signal.run(signal.pk)
    tasks.execute_signal.run(signal.pk)
    position = Position.objects.get(user=user, signal=signal)
    assert position.status == "open" and position.quantity == pending.quantity
    assert list(position.orders.values_list("client_order_id", flat=True)) == [cid]
    assert position.fills.count() == 1 and position.entry_price == Decimal("100.3002")


def test_crash_after_fill_is_a_no_op_on_rerun(market):
    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = _signal(market)
    tasks.execute_signal.run(signal.pk)
    Position.objects.filter(user=user).update(status="open")
    before = list(Fill.objects.values_list("pk", flat=True))
    tasks.execute_signal.run(signal.pk)
    assert list(Fill.objects.values_list("pk", flat=True)) == before


def test_pending_position_keeps_its_mode_when_user_toggles(market):
    """/toggle_paper_mode between decision and execution: the stored mode wins."""
    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = _signal(market)

    class Dies(PaperExecutor):
        def open_position(self, *, position):
            raise SystemExit

    with pytest.raises(SystemExit):
        services.signal_execute_for_user(user=user, signal=signal, executor=Dies(user=user))
    user.preferences.paper_mode = False
    user.preferences.save()
    live_like = PaperExecutor(user=user)
    live_like.mode = "live"  # stands in for a LiveExecutor: must not be used for the paper position
    position = services.signal_execute_for_user(user=user, signal=signal, executor=live_like)
    assert position.mode == "paper" and position.status == "open"
