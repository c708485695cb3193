"""A task that runs for minutes, loaded only into the worker of the shutdown test (``celery worker --include``)."""

import time

import redis
from celery import shared_task
from django.conf import settings


@shared_task(name="config.tests.shutdown_tasks.long_trade_task", queue="trade", time_limit=600, soft_time_limit=590)
def long_trade_task(marker: str) -> None:
    """Counts its starts in Redis (``marker``), then works for 10 minutes: a stop cannot wait for it."""
    redis.Redis.from_url(settings.REDIS_URL).incr(marker)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.2)
