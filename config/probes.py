"""Probes of the wired infrastructure (database, broker), shared by /readyz and the watchdog's health checks."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection

from config.celery import app

logger = logging.getLogger(__name__)


def database_ok() -> bool:
    """The default database answers ``SELECT 1``."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except Exception:  # any driver error means "not ready"
        logger.warning("readiness: database unreachable", exc_info=True)
        return False


def broker_ok() -> bool | None:
    """The Celery broker accepts a connection; None when there is no broker (embedded default: tasks run in-process)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.CELERY_BROKER_URL:
        return None
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        logger.warning("readiness: broker unreachable", exc_info=True)
        return False
