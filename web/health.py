"""Liveness and readiness endpoints for load balancers and the operators."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from analytics.selectors import heartbeat_age_seconds

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


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
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        logger.warning("readiness: broker unreachable", exc_info=True)
        return False


@require_GET
def readyz(request):
    """Database reachable, broker reachable (if any), heartbeat fresh (if a broker runs periodic tasks)."""
    database = database_ok()
    broker = broker_ok()
    age = heartbeat_age_seconds() if database else None
    heartbeat_fresh = None if broker is None else (age is not None and age <= settings.HEARTBEAT_MAX_AGE_SECONDS)
    ready = database and broker is not False and heartbeat_fresh is not False
    body = {
        "status": "ready" if ready else "not ready",
        "database": database,
        "broker": broker,
        "heartbeat_age_seconds": age,
        "heartbeat_fresh": heartbeat_fresh,
    }
    return JsonResponse(body, status=200 if ready else 503)
