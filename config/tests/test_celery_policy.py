"""Every registered Celery task: time limits, late acks on the trade/telegram queues, backoff with jitter."""

import pytest

from config.celery import MAX_TASK_TIME_LIMIT, RELIABLE_QUEUES, app, apply_reliability_policy, task_queue_name


@pytest.fixture(scope="module")
def registered_tasks():
    app.loader.import_default_modules()
    apply_reliability_policy()  # what the worker does on worker_init
    tasks = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert len(tasks) >= 20  # every app's tasks module was imported
    return tasks


def test_every_task_has_a_hard_and_a_lower_soft_time_limit(registered_tasks):
    for name, task in registered_tasks.items():
        assert task.time_limit and 0 < task.time_limit <= MAX_TASK_TIME_LIMIT, name
        assert task.soft_time_limit and task.soft_time_limit < task.time_limit, name


def test_trade_and_telegram_tasks_ack_late_and_requeue_when_the_worker_dies(registered_tasks):
    reliable = {name for name in registered_tasks if task_queue_name(name) in RELIABLE_QUEUES}
    assert {"trading.tasks.execute_signal", "telegram_bridge.tasks.notify_user"} <= reliable
    for name in reliable:
        task = registered_tasks[name]
        assert task.acks_late is True and task.reject_on_worker_lost is True, name


def test_retrying_tasks_back_off_exponentially_with_jitter(registered_tasks):
    retrying = {name: task for name, task in registered_tasks.items() if getattr(task, "autoretry_for", None)}
    assert "trading.tasks.execute_signal" in retrying and "signals.tasks.scan_markets" in retrying
    for name, task in retrying.items():
        assert task.retry_backoff and task.retry_jitter is True and task.retry_backoff_max, name
        assert task.max_retries is not None, name  # bounded


def test_policy_is_applied_when_a_task_is_registered_in_any_process():
    """No worker_init needed: the web process sends tasks too, and Celery refuses to send a task whose soft time limit
    (the global 240 s) exceeds its own hard limit."""

    @app.task(name="config.tests.bare_trade_task", queue="trade", autoretry_for=(ConnectionError,), time_limit=20)
    def bare_trade_task():
        return 1

    try:
        task = app.tasks[bare_trade_task.name]
        assert task.acks_late and task.reject_on_worker_lost
        assert task.time_limit == 20 and 0 < task.soft_time_limit < 20
        assert task.retry_backoff and task.retry_jitter
        assert task.apply().get() == 1
    finally:
        app.tasks.pop(bare_trade_task.name, None)


def test_transient_infrastructure_errors_are_retried_in_place_with_jittered_backoff(monkeypatch):
    import redis

    import config.celery as celery_module

    delays, cleanups = [], []
    monkeypatch.setattr(celery_module.time, "sleep", delays.append)
    # no database in this test (the real clean-up is tested on PostgreSQL below)
    monkeypatch.setattr(celery_module, "_drop_broken_database_connections", lambda: cleanups.append(1))
    calls = []

    @app.task(name="config.tests.flaky_task")
    def flaky_task(x):
        calls.append(x)
        if len(calls) < 3:
            raise redis.exceptions.ConnectionError("Redis is restarting")
        return x * 2

    try:
        task = app.tasks[flaky_task.name]
        task.push_request(id="t-1", called_directly=False, is_eager=False, retries=0)  # as the worker's tracer does
        try:
            assert task(21) == 42
            assert task.request.id == "t-1"  # the worker's request was kept
        finally:
            task.pop_request()
        assert calls == [21, 21, 21] and len(delays) == 2
        assert len(cleanups) == 2  # broken database connections dropped before each new attempt
        assert 0 < delays[0] <= 0.5 and 0 < delays[1] <= 1.0  # exponential cap, jittered
        assert {celery_module.transient_retry_delay(5) for _ in range(20)} != {celery_module.transient_retry_delay(5)}

        calls.clear()
        with pytest.raises(redis.exceptions.ConnectionError):
            task(1)  # called directly / eagerly: no hidden retries, the caller sees the error
        assert calls == [1]
    finally:
        app.tasks.pop(flaky_task.name, None)


@pytest.mark.postgres
def test_a_retry_after_a_dropped_database_connection_gets_a_fresh_one(postgres_database):
    """PostgreSQL terminated this process's connection: ``_drop_broken_database_connections`` (run before each in-place
    retry) closes it, so the next attempt reconnects instead of failing on the dead socket again."""
    import django.db
    import psycopg
    from django.db import connection

    from config.celery import _drop_broken_database_connections

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = postgres_database
    with psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        dbname=db["NAME"],
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises((django.db.OperationalError, django.db.InterfaceError)), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    _drop_broken_database_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
