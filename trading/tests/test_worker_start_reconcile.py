# ruff: noqa: F811  (pytest fixtures imported from trading.tests.live_fixtures are re-bound as test arguments)
"""The worker_ready hook of trading/tasks_live.py (`_reconcile_on_worker_start`): when a worker starts it schedules
one reconcile of every live user on the trade queue (repairing what a kill mid-order left behind), and it never
raises — a broker that is down or a failing reconcile must not stop the worker from starting."""

from __future__ import annotations

import base64
import json
import logging
from decimal import Decimal
from types import SimpleNamespace

import kombu.exceptions
import pytest
from celery.signals import worker_ready

from trading.executors.live import LiveExecutor
from trading.models import Position
from trading.tasks_live import _reconcile_on_worker_start, reconcile_exchange_positions
from trading.tests.live_fixtures import SYMBOL, account, fake_exchange, live_user, make_live_position  # noqa: F401

TASK_NAME = "trading.tasks_live.reconcile_exchange_positions"
# worker_ready is sent with the worker's Consumer as sender; the hook must not depend on it.
FAKE_CONSUMER = SimpleNamespace(hostname="celery@test-worker")


def test_hook_is_connected_to_worker_ready():
    assert _reconcile_on_worker_start in [ref() for _, ref in worker_ready.receivers]


def test_hook_schedules_one_reconcile_of_all_users_on_the_trade_queue(monkeypatch):
    calls = []
    monkeypatch.setattr(reconcile_exchange_positions, "apply_async", lambda *a, **kw: calls.append((a, kw)))
    assert _reconcile_on_worker_start(sender=FAKE_CONSUMER) is None
    assert calls == [((), {"queue": "trade"})]  # no user_id: every user with live positions


def test_only_a_worker_consuming_the_trade_queue_schedules_it(monkeypatch):
    calls = []
    monkeypatch.setattr(reconcile_exchange_positions, "apply_async", lambda *a, **kw: calls.append((a, kw)))

    def consumer(*names):
        return SimpleNamespace(
            hostname="celery@w", task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=n) for n in names])
        )

    _reconcile_on_worker_start(sender=consumer("scan", "telegram"))
    assert calls == []  # a scan/telegram-only worker leaves the trade workers alone
    _reconcile_on_worker_start(sender=consumer("default", "trade"))
    assert calls == [((), {"queue": "trade"})]


@pytest.mark.redis
def test_hook_publishes_the_reconcile_to_the_trade_queue_of_the_broker(redis_url):
    """With a real broker (the run's own Redis db): the message really lands in the `trade` queue."""
    import redis

    from config.celery import app

    if app.conf.broker_url != redis_url:
        pytest.skip("the Celery broker is not the test run's Redis")
    client = redis.Redis.from_url(redis_url)
    client.delete("trade")
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        _reconcile_on_worker_start(sender=FAKE_CONSUMER)
    finally:
        app.conf.task_always_eager = eager
    try:
        messages = [json.loads(raw) for raw in client.lrange("trade", 0, -1)]
    finally:
        client.delete("trade")
    assert [m["headers"]["task"] for m in messages] == [TASK_NAME]
    body = messages[0]["body"]
    if messages[0]["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _ = json.loads(body)
    assert args == [] and kwargs == {}  # no user_id: every user with live positions


@pytest.mark.django_db
def test_start_up_reconcile_closes_a_position_whose_stop_filled_while_workers_were_down(live_user, account, published):
    """Eager (as the tests run): the hook's reconcile runs in place and repairs the live user's position."""
    position = LiveExecutor(user=live_user, sleep=lambda _s: None).open_position(position=make_live_position(live_user))
    assert position.status == Position.Status.OPEN
    account.set_price(SYMBOL, "97.5")  # the stop fills on the exchange while no worker watches

    _reconcile_on_worker_start(sender=FAKE_CONSUMER)

    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == Decimal("-3.75")  # (97.5 − 100) × 1.5
    assert account.balance == Decimal("10000") + position.net_pnl


def test_hook_never_raises_when_the_broker_is_down(monkeypatch, caplog):
    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(reconcile_exchange_positions, "apply_async", broker_down)
    with caplog.at_level(logging.ERROR, logger="trading.tasks_live"):
        assert _reconcile_on_worker_start(sender=FAKE_CONSUMER) is None
    record = next(r for r in caplog.records if r.name == "trading.tasks_live")
    assert "could not schedule the start-up reconcile" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is kombu.exceptions.OperationalError


def test_hook_never_raises_against_an_unreachable_broker_url(monkeypatch, caplog):
    """A real publish to a port nothing listens on (not eager): the connection error is caught and logged."""
    from config.celery import app

    overrides = {
        "task_always_eager": False,
        "broker_url": "redis://127.0.0.1:1/0",
        "task_publish_retry": False,
        "broker_transport_options": {"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0},
    }
    saved = {name: app.conf[name] for name in overrides}
    app.conf.update(overrides)
    # The producer and connection pools are built from broker_url on first use: start from fresh ones.
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    monkeypatch.setattr(app, "_pool", None)
    try:
        with caplog.at_level(logging.ERROR, logger="trading.tasks_live"):
            assert _reconcile_on_worker_start(sender=FAKE_CONSUMER) is None
    finally:
        app.conf.update(saved)
        if app._pool is not None:
            app._pool.force_close_all()
    record = next(r for r in caplog.records if "could not schedule the start-up reconcile" in r.getMessage())
    assert record.exc_info[0] is kombu.exceptions.OperationalError


@pytest.mark.django_db
def test_hook_never_raises_when_the_reconcile_itself_fails(monkeypatch, caplog):
    def reconcile_crashes():
        raise RuntimeError("database went away")

    monkeypatch.setattr("trading.reconcile.reconcile_all", reconcile_crashes)
    with caplog.at_level(logging.ERROR, logger="trading.tasks_live"):
        assert _reconcile_on_worker_start(sender=FAKE_CONSUMER) is None  # eager: the error is caught too
    assert any("could not schedule the start-up reconcile" in r.getMessage() for r in caplog.records)
