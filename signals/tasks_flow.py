"""Celery task of the spot order-flow monitor (``scan`` queue): a thin wrapper around ``flow_monitor_run``.

Beat entry ``flow-monitor`` (settings.CELERY_BEAT_SCHEDULE): every minute, expiring before the next one so a backed-up
worker never runs stale cycles. The cycle itself claims its minute in the shared cache, so a duplicate delivery or
two workers never score the same minute twice. Registered through ``config/celery.py`` (``app.conf.imports``).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="signals.tasks_flow.flow_monitor_cycle", queue="scan", ignore_result=False)
def flow_monitor_cycle() -> dict:
    """Fetch spot order flow, score the 1m/5m/15m windows, turn stable extreme alerts into ``Signal(source=flow)``."""
    from signals.flow_monitor import flow_monitor_run

    return flow_monitor_run().summary()
