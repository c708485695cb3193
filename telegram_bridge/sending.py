"""Handing stored deliveries to the sender: the ``deliveries_send`` task (queue ``telegram``) and the fan-out of
delivery ids into chunks of it. Every part of the bridge that stores a message for Telegram (a reply, a group
welcome, a broadcast) queues it through here.

The sender is built on aiogram, which takes 5-10 s to import (pydantic models): the task imports it on its first
send, so a process that only queues (the web server, the scanner) never pays that.
"""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)

RELIABLE = {"acks_late": True, "reject_on_worker_lost": True}


def deliveries_enqueue(delivery_ids: list[int]) -> int:
    """Fan out: one send task per chunk of deliveries. Returns the number of chunks."""
    size = settings.TELEGRAM_BROADCAST_CHUNK_SIZE
    chunks = [delivery_ids[i : i + size] for i in range(0, len(delivery_ids), size)]
    for chunk in chunks:
        deliveries_send.apply_async(kwargs={"delivery_ids": chunk})
    return len(chunks)


@shared_task(
    bind=True,
    name="telegram_bridge.tasks.deliveries_send",
    time_limit=600,
    soft_time_limit=570,
    max_retries=8,
    **RELIABLE,
)
def deliveries_send(self, delivery_ids: list[int]) -> dict:
    from telegram_bridge.sender import deliveries_send as deliveries_send_service  # aiogram: see the module text

    report = deliveries_send_service(delivery_ids=delivery_ids)
    leftover = report.retry_later + report.busy
    if leftover and not self.app.conf.task_always_eager and self.request.retries < self.max_retries:
        # Flood control or a Telegram outage: exponential backoff with jitter; after max_retries the periodic
        # sweeper (deliveries_resend_stale) keeps trying. Rows already sent are skipped by the claim.
        # At most 600 s: on Redis a countdown is held unacknowledged, and must end before the visibility timeout.
        countdown = min(15 * 2**self.request.retries, 400) * random.uniform(0.5, 1.5)
        raise self.retry(kwargs={"delivery_ids": delivery_ids}, countdown=countdown)
    return {
        "sent": report.sent,
        "blocked": report.blocked,
        "failed": report.failed,
        "retry_later": leftover,
        "retry_afters": report.retry_afters,
    }
