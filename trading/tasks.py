"""Celery tasks of the trading app (``trade`` queue): thin wrappers around services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from exchanges.errors import RetryableExchangeError
from trading import intents

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="trading.tasks.execute_signal",
    queue="trade",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def execute_signal(self, signal_id: int) -> dict:
    """Consumer of ``signal.created``: trading's fan-out. Stores one execution intent per user with auto-trading on
    (one transaction, with the fan-out record), then queues one ``execute_intent`` per pending intent. A lost task is
    announced again by ``signals.services.signal_publish_pending``; a lost intent task is queued again by
    ``execution_intents_sweep``. With no broker (tasks run eagerly) every intent is executed here."""
    if self.app.conf.task_always_eager:
        return intents.signal_execute(signal_id=signal_id)
    pending = intents.execution_intents_fan_out(signal_id=signal_id)
    intents_queue(pending)
    return {"intents": len(pending)}


@shared_task(
    name="trading.tasks.execute_intent",
    queue="trade",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(
        RetryableExchangeError,
    ),  # PostgreSQL/Redis drop-outs: retried in place (config.celery.ReliableTask)
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=5,
    time_limit=120,
    ignore_result=True,
)
def execute_intent(intent_id: int) -> str | None:
    """One (signal, user): decide and execute it once; returns the outcome. Idempotent (``trading.intents``)."""
    try:
        run = intents.execution_intent_execute(intent_id=intent_id)
    except intents.RETRYABLE as exc:
        logger.warning("execution intent %s: %s (%s); retried", intent_id, type(exc).__name__, exc)
        raise
    logger.info("execution intent %s: %s", intent_id, run.intent.outcome if run is not None else "gone")
    return run.intent.outcome if run is not None else None


@shared_task(name="trading.tasks.execution_intents_sweep", queue="trade", time_limit=60, ignore_result=True)
def execution_intents_sweep() -> int:
    """Beat (every 10 s): queue again the intents not decided by their due time."""
    return intents_queue(intents.execution_intents_due())


def intents_queue(intent_ids: list[int]) -> int:
    for intent_id in intent_ids:
        execute_intent.apply_async(kwargs={"intent_id": intent_id})
    return len(intent_ids)


@shared_task(name="trading.tasks.monitor_positions", queue="trade", acks_late=True, reject_on_worker_lost=True)
def monitor_positions() -> dict:
    """Beat (every minute): closed candles → exits of every open position, then the funding times now due."""
    from trading.monitor import positions_monitor_step

    report = positions_monitor_step()
    return {
        "positions": report.positions,
        "candles": report.candles,
        "closed": report.closed,
        "funding": report.funding,
        "resumed": report.resumed,
        "errors": len(report.errors),
    }


@shared_task(name="trading.tasks.monitor_position_prices", queue="trade", acks_late=True, reject_on_worker_lost=True)
def monitor_position_prices() -> int:
    """Beat (every price-cache TTL): the fresh last price of each symbol with an open position, applied as a tick
    (stops, targets, trailing between two candles)."""
    from trading.monitor import positions_monitor_market_prices

    return positions_monitor_market_prices()


@shared_task(name="trading.tasks.charge_funding", queue="trade", acks_late=True, reject_on_worker_lost=True)
def charge_funding() -> int:
    from trading.ledger import funding_charge_due
    from trading.market import market_now

    return funding_charge_due(now=market_now())
