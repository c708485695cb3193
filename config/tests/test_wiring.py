"""Every beat entry and every domain-event consumer names a task a worker actually registers, on the right queue."""

from django.conf import settings

from config.celery import app, task_queue_name
from config.events import task_modules_load


def test_every_beat_entry_and_event_consumer_is_a_registered_task():
    task_modules_load()
    beat_tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    consumers = {task for tasks in settings.DOMAIN_EVENT_CONSUMERS.values() for task in tasks}
    assert beat_tasks - set(app.tasks) == set()
    assert consumers - set(app.tasks) == set()
    assert {"scan-markets", "track-signal-outcomes", "monitor-positions", "heartbeat", "watchdog"} <= set(
        settings.CELERY_BEAT_SCHEDULE
    )


def test_order_execution_never_waits_behind_a_scan():
    task_modules_load()
    assert task_queue_name("trading.tasks.execute_signal") == "trade"
    assert task_queue_name("telegram_bridge.tasks.broadcast_signal") == "telegram"
    assert task_queue_name("signals.tasks.scan_markets") == "scan"
