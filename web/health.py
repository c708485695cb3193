"""Liveness and readiness endpoints for load balancers and the operators."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from analytics.selectors import heartbeat_age_seconds
from config.checks import configuration_problems
from config.probes import broker_ok, database_ok


@require_GET
def healthz(request):
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    """Configuration sound (config/checks.py: Fernet keys, secret key, broker and database URLs), database reachable,
    broker reachable (if any), heartbeat fresh (if a broker runs periodic tasks)."""
    configuration_errors = [
        f"{message.id}: {message.msg}" for message in configuration_problems() if message.is_serious()
    ]
    database = database_ok()
    broker = broker_ok()
    age = heartbeat_age_seconds() if database else None
    heartbeat_fresh = None if broker is None else (age is not None and age <= settings.HEARTBEAT_MAX_AGE_SECONDS)
    ready = not configuration_errors and database and broker is not False and heartbeat_fresh is not False
    body = {
        "status": "ready" if ready else "not ready",
        "configuration": configuration_errors or "ok",
        "database": database,
        "broker": broker,
        "heartbeat_age_seconds": age,
        "heartbeat_fresh": heartbeat_fresh,
    }
    return JsonResponse(body, status=200 if ready else 503)
