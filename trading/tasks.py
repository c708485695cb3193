"""Celery tasks of the trading app (``trade`` queue): thin wrappers around services."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from exchanges.errors import RetryableExchangeError


@shared_task(
    name="trading.tasks.execute_signal",
    queue="trade",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(RetryableExchangeError, OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def execute_signal(signal_id: int) -> dict:
    """Consumer of ``signal.created``: open the signal for every eligible user. Idempotent (see
    ``trading.services``): redelivery after a worker crash neither loses nor doubles a position."""
    from trading.flip import signal_execute_with_flip

    return signal_execute_with_flip(signal_id=signal_id)  # = signal_execute, plus the opt-in flip on flow signals


@shared_task(name="trading.tasks.monitor_positions", queue="trade", acks_late=True, reject_on_worker_lost=True)
def monitor_positions() -> dict:
    """Beat (every minute): closed candles → exits of every open position, then the funding times now due."""
    from trading.monitor import positions_monitor_step

    report = positions_monitor_step()
    return {"positions": report.positions, "candles": report.candles, "closed": report.closed,
            "funding": report.funding, "resumed": report.resumed, "errors": len(report.errors)}


@shared_task(name="trading.tasks.monitor_position_prices", queue="trade", acks_late=True, reject_on_worker_lost=True)
def monitor_position_prices() -> int:
    """Beat (every price-cache TTL): the fresh last price of each symbol with an open position, applied as a tick
    (stops, targets, trailing between two candles)."""
    from trading.monitor import positions_monitor_market_prices

    return positions_monitor_market_prices()


@shared_task(name="trading.tasks.charge_funding", queue="trade", acks_late=True, reject_on_worker_lost=True)
def charge_funding() -> int:
    from trading.market import market_now
    from trading.services import funding_charge_due

    return funding_charge_due(now=market_now())
