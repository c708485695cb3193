"""Celery tasks of the signals app: thin wrappers around the services (all routed to the ``scan`` queue).

Beat entries (settings.CELERY_BEAT_SCHEDULE): ``scan_markets`` every 15 minutes at the candle close (the batches
start ``SIGNAL_SCAN_DELAY_SECONDS`` later so the exchange has the closed candle), ``track_signal_outcomes`` every
minute, ``publish_pending_signals`` every two minutes.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from signals.market_data import RetryableMarketDataError
from signals.outcomes import signal_track_outcomes
from signals.scanning import scan_batch_run, scan_start
from signals.services import signal_publish_pending

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(RetryableMarketDataError,), retry_backoff=5, retry_backoff_max=60, max_retries=3, acks_late=True
)
def scan_markets() -> dict:
    """Sync markets, record a ScanRun and fan out one ``scan_batch`` per batch of symbols on the ``scan`` queue."""
    plan = scan_start()
    delay = int(settings.SIGNAL_SCAN_DELAY_SECONDS)
    for symbols in plan.batches:
        scan_batch.apply_async(
            kwargs={"scan_run_id": plan.scan_run_id, "symbols": symbols, "now_ms": plan.now_ms},
            queue="scan",
            countdown=delay,
        )
    return {"scan_run_id": plan.scan_run_id, "batches": len(plan.batches)}


@shared_task(acks_late=True)
def scan_batch(*, scan_run_id: int, symbols: list[str], now_ms: int) -> dict:
    result = scan_batch_run(scan_run_id=scan_run_id, symbols=symbols, now_ms=now_ms)
    return {
        "scanned": result.scanned,
        "created": [signal.pk for signal in result.created],
        "refused": result.refused,
        "skipped": len(result.skipped),
    }


@shared_task
def track_signal_outcomes() -> list[int]:
    return [signal.pk for signal in signal_track_outcomes()]


@shared_task
def publish_pending_signals() -> int:
    return signal_publish_pending()
