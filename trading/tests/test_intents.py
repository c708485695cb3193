"""Execution intents: one per (signal, user), stored before any task is queued, decided exactly once, swept when lost."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError
from django.utils import timezone

from accounts.tests.factories import TelegramUserFactory
from config.celery import app
from signals.models import SignalFanout
from signals.tests.factories import SignalFactory
from trading import intents, services, tasks
from trading.executors.paper import PaperExecutor
from trading.models import ExecutionIntent, Position, TradeRefusal

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]


def _signal(market, **kwargs):
    signal = SignalFactory(**kwargs)
    market.prices[signal.symbol.symbol] = Decimal("100")
    return signal


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """A broker: ``execute_intent`` tasks queued (not run), as with a real worker."""
    sent: list[int] = []
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    monkeypatch.setattr(tasks.execute_intent, "apply_async", lambda kwargs: sent.append(kwargs["intent_id"]))
    yield sent
    app.conf.task_always_eager = eager


def test_fan_out_stores_one_intent_per_auto_trader_with_its_record_before_queueing(market, queued):
    traders = [TelegramUserFactory(auto_trading_enabled=True) for _ in range(3)]
    TelegramUserFactory(auto_trading_enabled=False)
    TelegramUserFactory(auto_trading_enabled=True, is_banned=True)
    signal = _signal(market)

    assert tasks.execute_signal.run(signal.pk) == {"intents": 3}

    stored = ExecutionIntent.objects.filter(signal=signal)
    assert sorted(stored.values_list("user_id", flat=True)) == sorted(u.pk for u in traders)
    assert set(stored.values_list("outcome", flat=True)) == {"pending"}
    assert sorted(queued) == sorted(stored.values_list("pk", flat=True))  # one small task per intent
    assert SignalFanout.objects.filter(signal=signal, consumer="trading.tasks.execute_signal").exists()
    assert not Position.objects.exists()  # the fan-out itself executes nothing


def test_a_repeated_fan_out_adds_only_missing_users_and_never_touches_decided_intents(market, queued):
    first, second = (TelegramUserFactory(auto_trading_enabled=True) for _ in range(2))
    signal = _signal(market)
    pending = intents.execution_intents_fan_out(signal_id=signal.pk)
    intents.execution_intent_execute(intent_id=pending[0])  # first's intent decided

    late = TelegramUserFactory(auto_trading_enabled=True)  # switched auto-trading on after the signal
    again = intents.execution_intents_fan_out(signal_id=signal.pk)
    assert ExecutionIntent.objects.filter(signal=signal).count() == 3
    assert sorted(ExecutionIntent.objects.filter(pk__in=again).values_list("user_id", flat=True)) == sorted(
        [second.pk, late.pk]
    )
    assert ExecutionIntent.objects.get(signal=signal, user=first).outcome == "opened"
    assert Position.objects.filter(signal=signal).count() == 1


def test_each_intent_records_its_outcome(market, monkeypatch):
    opened = TelegramUserFactory(auto_trading_enabled=True)
    refused = TelegramUserFactory(auto_trading_enabled=True)
    refused.preferences.accepted_risk_levels = ["low"]
    refused.preferences.save()
    broken = TelegramUserFactory(auto_trading_enabled=True)
    original = PaperExecutor.open_position

    def flaky(self, *, position):
        if position.user_id == broken.pk:
            raise RuntimeError("boom")
        return original(self, position=position)

    monkeypatch.setattr(PaperExecutor, "open_position", flaky)
    signal = _signal(market, risk_level="high")
    counts = intents.signal_execute(signal_id=signal.pk)

    assert counts == {"opened": 1, "refused": 1, "skipped": 0, "failed": 1, "flipped": 0}
    by_user = {i.user_id: i for i in ExecutionIntent.objects.filter(signal=signal)}
    assert by_user[opened.pk].outcome == "opened" and by_user[opened.pk].position.status == "open"
    assert (by_user[refused.pk].outcome, by_user[refused.pk].reason) == ("refused", "risk_level")
    assert TradeRefusal.objects.get(user=refused, signal=signal).reason == "risk_level"
    assert (by_user[broken.pk].outcome, by_user[broken.pk].detail) == ("failed", "RuntimeError")
    assert all(i.decided_at is not None and i.attempts == 1 for i in by_user.values())

    closed = _signal(market, status="closed")
    intents.signal_execute(signal_id=closed.pk)
    assert set(ExecutionIntent.objects.filter(signal=closed).values_list("outcome", "reason")) == {
        ("skipped", "signal_closed")
    }


def test_a_retryable_failure_leaves_the_intent_pending_for_the_retry(market, monkeypatch):
    user = TelegramUserFactory(auto_trading_enabled=True)
    signal = _signal(market)
    [intent_id] = intents.execution_intents_fan_out(signal_id=signal.pk)
    real = services.signal_execute_for_user
    monkeypatch.setattr(
        services,
        "signal_execute_for_user",
        lambda **kw: (_ for _ in ()).throw(OperationalError("server closed the connection unexpectedly")),
    )
    with pytest.raises(OperationalError):
        tasks.execute_intent.run(intent_id)
    assert ExecutionIntent.objects.get(pk=intent_id).outcome == "pending"
    monkeypatch.setattr(services, "signal_execute_for_user", real)
    assert tasks.execute_intent.run(intent_id) == "opened"
    assert tasks.execute_intent.run(intent_id) == "opened"  # a redelivered task: nothing more
    assert Position.objects.filter(user=user, signal=signal).count() == 1


def test_the_sweeper_queues_again_only_intents_past_their_due_time_backing_off(market, queued):
    users = [TelegramUserFactory(auto_trading_enabled=True) for _ in range(3)]
    signal = _signal(market)
    ids = intents.execution_intents_fan_out(signal_id=signal.pk)  # their tasks were lost (Redis crash)
    assert tasks.execution_intents_sweep.run() == 0  # not due yet: they may still be in the queue

    now = timezone.now()
    created = now - timedelta(seconds=45)
    ExecutionIntent.objects.filter(pk__in=ids[:2]).update(created_at=created, due_at=now - timedelta(seconds=1))
    ExecutionIntent.objects.filter(pk=ids[0]).update(outcome="opened")  # decided meanwhile
    assert tasks.execution_intents_sweep.run() == 1
    assert queued == [ids[1]]
    requeued = ExecutionIntent.objects.get(pk=ids[1])
    waited = requeued.due_at - timezone.now()
    assert timedelta(seconds=40) < waited <= timedelta(seconds=46)  # as long again as it has waited (45 s)
    assert tasks.execution_intents_sweep.run() == 0  # not again on the next sweep

    ExecutionIntent.objects.filter(pk=ids[2]).update(created_at=now - timedelta(hours=1), due_at=now)
    intents.execution_intents_due()
    assert ExecutionIntent.objects.get(pk=ids[2]).due_at - timezone.now() <= timedelta(seconds=60)  # capped
    assert len(users) == 3


def test_an_intent_that_keeps_dying_is_recorded_as_failed(market, queued):
    TelegramUserFactory(auto_trading_enabled=True)
    [intent_id] = intents.execution_intents_fan_out(signal_id=_signal(market).pk)
    ExecutionIntent.objects.filter(pk=intent_id).update(
        attempts=intents.INTENT_MAX_ATTEMPTS, due_at=timezone.now() - timedelta(seconds=1)
    )
    assert intents.execution_intents_due() == []
    intent = ExecutionIntent.objects.get(pk=intent_id)
    assert intent.outcome == "failed" and "gave up" in intent.detail


def test_lost_tasks_are_decided_by_the_sweeper_exactly_once(market):
    """Redis lost every queued ``execute_intent``; the sweeper (eager here) decides each intent, once."""
    users = [TelegramUserFactory(auto_trading_enabled=True) for _ in range(4)]
    signal = _signal(market)
    intents.execution_intents_fan_out(signal_id=signal.pk)
    ExecutionIntent.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    assert tasks.execution_intents_sweep.run() == 4
    assert tasks.execution_intents_sweep.run() == 0
    assert set(ExecutionIntent.objects.values_list("outcome", flat=True)) == {"opened"}
    assert sorted(Position.objects.filter(signal=signal).values_list("user_id", flat=True)) == sorted(
        u.pk for u in users
    )
    assert set(Position.objects.values_list("status", flat=True)) == {"open"}
