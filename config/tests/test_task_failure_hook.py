"""The Celery task_failure hook (config/celery.py `_report_task_failure`): every failed task goes through the central
error handler — logged with a short reference and the task's name and id, counted per kind and UTC day, and admins
are alerted once the count reaches the threshold, at most once per interval. The hook itself never raises."""

from __future__ import annotations

import logging

import pytest
from celery import signals
from django.core.cache import cache

from config.celery import app
from config.observability import _report_task_failure, error_counts

TASK_NAME = "config.tests.always_failing_task"


class BoomError(RuntimeError):
    pass


@pytest.fixture
def clear_cache():
    cache.clear()  # locmem in the embedded setup, the run's own Redis db otherwise
    yield
    cache.clear()


@pytest.fixture
def failing_task():
    @app.task(name=TASK_NAME)
    def always_failing_task(secret):
        raise BoomError("kaboom")

    try:
        yield app.tasks[TASK_NAME]
    finally:
        app.tasks.pop(TASK_NAME, None)


@pytest.fixture
def published(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr("config.observability.publish", lambda event, **payload: sent.append((event, payload)))
    return sent


def _run_and_fail(task, *, task_id: str) -> None:
    # The worker's tracer without propagation, as in a worker: the failure is recorded and task_failure is sent.
    # (With CELERY_TASK_EAGER_PROPAGATES the eager caller gets the exception instead and the signal is not sent.)
    result = task.apply(args=("s3cr3t-arg",), task_id=task_id, throw=False)
    assert result.failed() and isinstance(result.result, BoomError)


def test_hook_is_connected_to_task_failure():
    receivers = [ref() for _, ref in signals.task_failure.receivers]
    assert _report_task_failure in receivers


@pytest.mark.django_db
def test_failing_task_is_logged_with_reference_and_counted_per_kind(failing_task, clear_cache, caplog, published):
    before = error_counts()
    with caplog.at_level(logging.ERROR, logger="perps.errors"):
        _run_and_fail(failing_task, task_id="task-id-1")
        _run_and_fail(failing_task, task_id="task-id-2")
    counts = error_counts()
    assert counts["task"] == before["task"] + 2
    assert {kind: n for kind, n in counts.items() if kind != "task"} == {k: n for k, n in before.items() if k != "task"}

    records = [r for r in caplog.records if r.name == "perps.errors"]
    assert len(records) == 2
    first = records[0]
    assert first.error_kind == "task"
    assert first.task == TASK_NAME and first.celery_task_id == "task-id-1"
    assert len(first.error_reference) == 8 and first.error_reference.isalnum()  # short, friendly reference
    assert first.error_reference != records[1].error_reference
    assert first.exc_info is not None and first.exc_info[0] is BoomError  # operators get the trace
    assert "s3cr3t-arg" not in first.getMessage()  # task arguments are not logged


@pytest.mark.django_db
def test_admins_are_alerted_once_when_the_threshold_is_reached(
    failing_task, clear_cache, settings, published, monkeypatch
):
    from accounts.services import admins_notify
    from accounts.tests.factories import TelegramUserFactory

    admin = TelegramUserFactory(is_admin=True)
    TelegramUserFactory(is_admin=False)
    settings.ERROR_ALERT_THRESHOLD = 3
    settings.ERROR_ALERT_INTERVAL_SECONDS = 3600

    for i in range(2):
        _run_and_fail(failing_task, task_id=f"t-{i}")
    assert published == []  # below the threshold

    for i in range(2, 6):
        _run_and_fail(failing_task, task_id=f"t-{i}")
    assert error_counts()["task"] == 6
    assert [event for event, _ in published] == ["admins.notify"]
    text = published[0][1]["text"]
    told = []
    monkeypatch.setattr("accounts.services.publish", lambda event, **payload: told.append((event, payload["user_id"])))
    assert admins_notify(**published[0][1]) == 1 and told == [("user.notify", admin.pk)]
    assert "3 task errors today" in text and "BoomError" in text
    assert published[0][1]["dedupe_key"].startswith("error-alert:task:")

    cache.delete("errors:alerted:task")  # the interval is over
    _run_and_fail(failing_task, task_id="t-7")
    assert len(published) == 2 and "7 task errors today" in published[1][1]["text"]


@pytest.mark.django_db
def test_hook_never_raises_when_the_error_store_is_down(failing_task, monkeypatch, caplog):
    def cache_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "add", cache_down)
    monkeypatch.setattr(cache, "incr", cache_down)
    with caplog.at_level(logging.WARNING):
        _run_and_fail(failing_task, task_id="t-down")  # the task's own error surfaces, not the hook's
    assert any("error accounting failed" in r.getMessage() for r in caplog.records)


def test_hook_ignores_a_failure_without_exception(clear_cache):
    _report_task_failure(sender=None, task_id="x", exception=None)
    assert error_counts()["task"] == 0
