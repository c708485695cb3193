"""Celery tasks of the bridge (queue ``telegram``): thin wrappers around the services; all idempotent.

Task arguments never carry secrets: ids, dedupe keys and already-rendered public texts only.
"""

from __future__ import annotations

import logging

from celery import shared_task

from analytics.models import BacktestRun
from telegram_bridge import broadcasts, services
from telegram_bridge.sending import RELIABLE, deliveries_enqueue, deliveries_send

__all__ = ["deliveries_send"]  # registered here too: Celery finds the bridge's tasks through this module

logger = logging.getLogger(__name__)


@shared_task(name="telegram_bridge.tasks.broadcast_signal", time_limit=300, **RELIABLE)
def broadcast_signal(signal_id: int) -> int:
    """Consumer of ``signal.created``: all delivery rows (and the fan-out record) in one transaction, then the send
    tasks. A lost task is announced again (``signals.services.signal_publish_pending``), rows whose send task was lost
    are sent by ``deliveries_resend_stale``."""
    return deliveries_enqueue(broadcasts.signal_broadcast_prepare(signal_id=signal_id))


@shared_task(name="telegram_bridge.tasks.announce_signal_outcome", time_limit=300, **RELIABLE)
def announce_signal_outcome(signal_id: int) -> int:
    return deliveries_enqueue(broadcasts.signal_outcome_prepare(signal_id=signal_id))


@shared_task(name="telegram_bridge.tasks.notify_position", time_limit=300, **RELIABLE)
def notify_position(position_id: int) -> int:
    return deliveries_enqueue(broadcasts.position_notification_prepare(position_id=position_id))


@shared_task(name="telegram_bridge.tasks.notify_user", time_limit=300, **RELIABLE)
def notify_user(user_id: int, text: str, dedupe_key: str) -> int:
    return deliveries_enqueue(broadcasts.user_notification_prepare(user_id=user_id, text=text, dedupe_key=dedupe_key))


@shared_task(name="telegram_bridge.tasks.deliveries_resend_stale", time_limit=300)
def deliveries_resend_stale() -> int:
    """Periodic sweeper (beat, every 10 s): deliveries left pending past their due time (their task was lost, retries
    exhausted) or claimed by a dead worker."""
    return deliveries_enqueue(broadcasts.stale_delivery_ids())


@shared_task(name="telegram_bridge.tasks.telegram_updates_prune", time_limit=300)
def telegram_updates_prune() -> int:
    """Daily: forget handled update ids older than a week (Telegram re-delivers for at most 24 hours)."""
    return services.telegram_updates_prune()


@shared_task(
    name="telegram_bridge.tasks.telegram_update_process",
    time_limit=60,
    soft_time_limit=50,
    ignore_result=True,
    **RELIABLE,
)
def telegram_update_process(*, update_id: int) -> bool:
    """A webhook update stored by the view: handle it exactly once (a repeat delivery of this task is a no-op)."""
    return services.update_process(update_id=update_id)


@shared_task(
    name="telegram_bridge.tasks.telegram_updates_process_stale", time_limit=300, soft_time_limit=280, ignore_result=True
)
def telegram_updates_process_stale() -> int:
    """Every minute (beat): stored webhook updates whose task was never queued or whose worker died."""
    return services.updates_process_stale()


@shared_task(name="telegram_bridge.tasks.backtest_report_send", time_limit=120, ignore_result=True)
def backtest_report_send(*, run_id: int) -> bool:
    """Consumer of ``backtest.finished``: the chart (or the failure) to the Telegram admins who asked."""
    # aiogram on first use: see telegram_bridge.sending
    from telegram_bridge.backtest_reports import backtest_report_send as report_send

    return report_send(run=BacktestRun.objects.get(pk=run_id))
