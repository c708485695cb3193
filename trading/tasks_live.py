"""Celery tasks of live trading (kept apart from trading/tasks.py). Thin wrappers: arguments are ids, never keys.

The top of the live side: it imports the live executor and reconcile, never the other way round. The executor learns
how to schedule the next check of a resting limit entry (``settle_limit_entry_later``) from the registration at
start-up (``TradingConfig.ready``: ``trading.executors.live.limit_entry_settle_scheduler_register``).
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from accounts.models import TelegramUser
from exchanges.errors import RetryableExchangeError
from trading import reconcile
from trading.executors.live import LiveExecutor
from trading.models import Position

logger = logging.getLogger(__name__)


@shared_task(name="trading.tasks_live.reconcile_exchange_positions", ignore_result=True)
def reconcile_exchange_positions(user_id: int | None = None) -> int:
    """Compare live positions/orders with the exchanges and repair; returns the number of repairs."""
    if user_id is None:
        reports = reconcile.reconcile_all()
    else:
        user = TelegramUser.objects.filter(pk=user_id).first()
        reports = [reconcile.reconcile_user(user=user)] if user else []
    repairs = sum(len(r.repairs) for r in reports)
    logger.info("reconciled %d user(s): %d repair(s)", len(reports), repairs)
    return repairs


@shared_task(
    name="trading.tasks_live.settle_limit_entry",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(RetryableExchangeError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=4,
)
def settle_limit_entry(position_id: int) -> str:
    """Check a live limit entry (scheduled by the executor while it rests on the book): protect what filled; at its
    deadline cancel the unfilled remainder, or fail the position and tell the user. Idempotent."""
    position = Position.objects.select_related("user", "symbol").filter(pk=position_id, mode="live").first()
    if position is None:
        return "missing"
    return LiveExecutor(user=position.user).limit_entry_settle(position=position).status


def settle_limit_entry_later(position_id: int, countdown: float) -> None:
    """Queue ``settle_limit_entry`` on the trade queue in ``countdown`` seconds (the next check of a limit entry on the
    book, at the latest at its deadline); reconcile passes are the fallback. The live executor's scheduler."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return  # an eager task would run now, before the deadline; reconcile settles it
    try:
        settle_limit_entry.apply_async(args=[position_id], queue="trade", countdown=max(countdown, 0) + 1)
    except Exception:  # a missing broker: the next reconcile pass settles it
        logger.exception("could not schedule the limit entry deadline of position %s", position_id)


@worker_ready.connect
def _reconcile_on_worker_start(sender=None, **_):
    """After a restart (possibly a kill mid-order), repair before anything else runs on the trade queue.

    Only a worker that consumes the trade queue schedules it (a scan- or telegram-only worker starting leaves the
    trade workers alone); when the consumed queues cannot be told, it schedules anyway (a reconcile is idempotent).
    """
    consumed = _consumed_queue_names(sender)
    if consumed is not None and "trade" not in consumed:
        return
    try:
        reconcile_exchange_positions.apply_async(queue="trade")
    except Exception:  # a missing broker must not stop the worker from starting
        logger.exception("could not schedule the start-up reconcile")


def _consumed_queue_names(consumer) -> set[str] | None:
    """The queue names the starting worker consumes (``worker_ready``'s sender is its Consumer), or None."""
    queues = getattr(getattr(consumer, "task_consumer", None), "queues", None)
    if not queues:
        return None
    return {queue.name for queue in queues}
