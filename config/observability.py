"""Request/task ids on every log line, and the central error handler for views, bot updates and Celery tasks.

* ``RequestIdMiddleware`` takes ``X-Request-ID`` from the client (or makes one), exposes it in the response, and every
  log record written while the request runs carries ``request_id``.
* Celery's task_prerun/task_postrun (wired in config/celery.py) put the task id on log records the same way.
* ``error_report`` is the one place an unexpected exception goes: operators get the full trace in the log with a short
  reference, counts per kind are kept for the admin health page, and admins get a (rate-limited) Telegram alert when
  one kind repeats. Users are only ever shown the reference.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from datetime import UTC, datetime
from html import escape

from celery import signals as celery_signals
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.shortcuts import render

from config.events import publish

logger = logging.getLogger("perps.errors")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="-")

ERROR_KINDS = ("view", "bot_update", "task", "exchange", "other")
ERROR_COUNT_TTL = 8 * 24 * 3600


class ContextFilter(logging.Filter):
    """Adds request_id and task_id to every record (``-`` outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id == "-":  # Django logs a failed response after the middleware returned; it passes the request
            request_id = getattr(getattr(record, "request", None), "request_id", "-")
        record.request_id = request_id
        record.task_id = task_id_var.get()
        return True


def _clean_request_id(value: str | None) -> str:
    if value and len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value):
        return value
    return secrets.token_hex(8)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = _clean_request_id(request.headers.get("X-Request-ID"))
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, Http404 | PermissionDenied | BadRequest | SuspiciousOperation):
            return None  # Django answers these itself (404/403/400); they are not errors of ours
        reference = error_report(exception, kind="view", context={"path": request.path, "method": request.method})
        request.error_reference = reference
        if request.path.startswith("/api/"):
            return JsonResponse({"error": "internal error", "reference": reference}, status=500)
        return render(request, "500.html", {"reference": reference}, status=500)


def _count_key(kind: str, day: str) -> str:
    return f"errors:{kind}:{day}"


def error_counts(*, day: str | None = None) -> dict[str, int]:
    """Errors per kind for one UTC day (today by default), for the admin health page."""
    day = day or datetime.now(UTC).strftime("%Y-%m-%d")
    values = cache.get_many([_count_key(kind, day) for kind in ERROR_KINDS])
    return {kind: int(values.get(_count_key(kind, day), 0)) for kind in ERROR_KINDS}


def _increment(key: str) -> int:
    if cache.add(key, 1, ERROR_COUNT_TTL):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, ERROR_COUNT_TTL)
        return 1


def error_report(exc: BaseException, *, kind: str = "other", context: dict | None = None) -> str:
    """Log ``exc`` with its trace and a short reference, count it, alert admins if it repeats. Returns the reference."""
    kind = kind if kind in ERROR_KINDS else "other"
    reference = secrets.token_hex(4).upper()
    logger.error(
        "unhandled %s error %s: %s",
        kind,
        reference,
        type(exc).__name__,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"error_reference": reference, "error_kind": kind, **(context or {})},
    )
    try:
        count = _increment(_count_key(kind, datetime.now(UTC).strftime("%Y-%m-%d")))
        if count >= settings.ERROR_ALERT_THRESHOLD and cache.add(
            f"errors:alerted:{kind}", 1, settings.ERROR_ALERT_INTERVAL_SECONDS
        ):
            _alert_admins(kind=kind, count=count, reference=reference, exc=exc)
    except Exception:  # the error handler itself must never raise (e.g. Redis down)
        logger.warning("error accounting failed for %s", reference, exc_info=True)
    return reference


def _alert_admins(*, kind: str, count: int, reference: str, exc: BaseException) -> None:
    text = (
        f"⚠️ <b>{count} {escape(kind)} errors today</b>\nlatest: <code>{escape(type(exc).__name__)}</code> "
        f"ref <code>{reference}</code>"
    )
    hour = datetime.now(UTC).strftime("%Y%m%d%H")
    publish("admins.notify", text=text, dedupe_key=f"error-alert:{kind}:{hour}")


BOT_ERROR_TEXT = (
    "Sorry, something went wrong on our side. Please try again later. Error reference: <code>{reference}</code>"
)


def bot_update_error(exc: BaseException, *, update_id: int | None = None) -> str:
    """The central handler for a Telegram update that failed: report it (kind ``bot_update``) and return the short,
    friendly HTML message to show the user, carrying the error reference."""
    reference = error_report(exc, kind="bot_update", context={"update_id": update_id})
    return BOT_ERROR_TEXT.format(reference=reference)


# Celery signals: the task id on every log line of a task, and every failed task through the central handler. They are
# connected here (not in config/celery.py) so that the Celery app module imports nothing of ours.
@celery_signals.task_prerun.connect
def _bind_task_id(task_id=None, **_):
    task_id_var.set(task_id or "-")


@celery_signals.task_postrun.connect
def _unbind_task_id(**_):
    task_id_var.set("-")


@celery_signals.task_failure.connect
def _report_task_failure(sender=None, task_id=None, exception=None, **_):
    if exception is not None:
        error_report(exception, kind="task", context={"task": getattr(sender, "name", "?"), "celery_task_id": task_id})
