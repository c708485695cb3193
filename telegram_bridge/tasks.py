"""Celery tasks of the bridge (queue ``telegram``): thin wrappers around the services; all idempotent.

Task arguments never carry secrets: ids, dedupe keys and already-rendered public texts only.
"""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings

from analytics.models import BacktestRun
from telegram_bridge import broadcasts

logger = logging.getLogger(__name__)

_RELIABLE = {"acks_late": True, "reject_on_worker_lost": True}

# _sender_note: the tasks that talk to Telegram import the aiogram-based sender inside the task, not here. Every
# process imports this module (event dispatch, worker start); aiogram takes 5-10 s to import (pydantic models), and
# only a process that actually sends should pay that, once, on its first send.


def _enqueue_chunks(delivery_ids: list[int]) -> int:
    """Fan out: one task per chunk of deliveries."""
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
    **_RELIABLE,
)
def deliveries_send(self, delivery_ids: list[int]) -> dict:
    from telegram_bridge.sender import deliveries_send as deliveries_send_service  # aiogram: see _sender_note

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


@shared_task(name="telegram_bridge.tasks.broadcast_signal", time_limit=300, **_RELIABLE)
def broadcast_signal(signal_id: int) -> int:
    """Consumer of ``signal.created``: all delivery rows (and the fan-out record) in one transaction, then the send
    tasks. A lost task is announced again (``signals.services.signal_publish_pending``), rows whose send task was lost
    are sent by ``deliveries_resend_stale``."""
    return _enqueue_chunks(broadcasts.signal_broadcast_prepare(signal_id=signal_id))


@shared_task(name="telegram_bridge.tasks.announce_signal_outcome", time_limit=300, **_RELIABLE)
def announce_signal_outcome(signal_id: int) -> int:
    return _enqueue_chunks(broadcasts.signal_outcome_prepare(signal_id=signal_id))


@shared_task(name="telegram_bridge.tasks.notify_position", time_limit=300, **_RELIABLE)
def notify_position(position_id: int) -> int:
    return _enqueue_chunks(broadcasts.position_notification_prepare(position_id=position_id))


@shared_task(name="telegram_bridge.tasks.notify_user", time_limit=300, **_RELIABLE)
def notify_user(user_id: int, text: str, dedupe_key: str) -> int:
    return _enqueue_chunks(broadcasts.user_notification_prepare(user_id=user_id, text=text, dedupe_key=dedupe_key))


@shared_task(name="telegram_bridge.tasks.deliveries_resend_stale", time_limit=300)
def deliveries_resend_stale() -> int:
    """Periodic sweeper (beat, every 10 s): deliveries left pending past their due time (their task was lost, retries
    exhausted) or claimed by a dead worker."""
    return _enqueue_chunks(broadcasts.stale_delivery_ids())


@shared_task(name="telegram_bridge.tasks.telegram_updates_prune", time_limit=300)
def telegram_updates_prune() -> int:
    """Daily: forget handled update ids older than a week (Telegram re-delivers for at most 24 hours)."""
    from telegram_bridge.services import telegram_updates_prune as prune

    return prune()


@shared_task(
    name="telegram_bridge.tasks.telegram_update_process",
    time_limit=60,
    soft_time_limit=50,
    ignore_result=True,
    **_RELIABLE,
)
def telegram_update_process(*, update_id: int) -> bool:
    """A webhook update stored by the view: handle it exactly once (a repeat delivery of this task is a no-op)."""
    from telegram_bridge.services import update_process

    return update_process(update_id=update_id)


@shared_task(
    name="telegram_bridge.tasks.telegram_updates_process_stale", time_limit=300, soft_time_limit=280, ignore_result=True
)
def telegram_updates_process_stale() -> int:
    """Every minute (beat): stored webhook updates whose task was never queued or whose worker died."""
    from telegram_bridge.services import updates_process_stale

    return updates_process_stale()


@shared_task(name="telegram_bridge.tasks.backtest_report_send", time_limit=120, ignore_result=True)
def backtest_report_send(*, run_id: int) -> bool:
    """Consumer of ``backtest.finished``: the chart (or the failure) to the Telegram admins who asked."""
    from telegram_bridge.backtest_reports import backtest_report_send as report_send  # aiogram: see _sender_note

    return report_send(run=BacktestRun.objects.get(pk=run_id))
