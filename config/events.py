"""Domain events: a state change is announced once and each subscriber gets it through its own Celery task.

Subscribers are listed in ``settings.DOMAIN_EVENT_CONSUMERS`` (event name -> task names), so no app imports another
app's tasks. Events are dispatched only after the surrounding transaction commits; consumers must be idempotent
(they are keyed by the entity id or a dedupe key), because an event may be dispatched more than once.

Nothing published is lost: ``publish`` stores the event in the outbox (``config.models.OutboxEvent``) inside the
caller's transaction, so it commits or rolls back with the state change it announces. Once the transaction commits
the event is dispatched and its row deleted; if the process dies in between, or the broker is down (logged, never
raised to the caller, whose transaction already committed), the row stays and ``outbox_sweep`` (beat entry
``events-outbox-sweep``) dispatches it again once it is ``EVENT_OUTBOX_GRACE_SECONDS`` old: at least once, never
zero times. Only when the row itself cannot be stored (the database is the thing failing, e.g. the error alerts of
config/observability.py) does ``publish`` fall back to a plain dispatch on commit, and log it. (``signal.created`` has
its own re-announcing sweeper too, ``signals.services.signal_publish_pending``; ``ring`` is for work whose stored row
is the truth and has sweepers of its own, so it stores nothing here.)
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.celery import app, transient_errors

logger = logging.getLogger(__name__)


def event_consumers(event: str) -> list[str]:
    try:
        return list(settings.DOMAIN_EVENT_CONSUMERS[event])
    except KeyError:
        raise ValueError(f"Unknown domain event {event!r}") from None


@cache
def task_modules_load() -> None:
    """Import every app's tasks module (and ``conf.imports``) once, so consumers are registered in this process."""
    app.loader.import_default_modules()


def dispatch_now(event: str, payload: dict[str, Any]) -> list[str]:
    """Send the event to every consumer task now. Returns the task names it was sent to."""
    return dispatch_to(event, payload, consumers=event_consumers(event))


def dispatch_to(event: str, payload: dict[str, Any], *, consumers: list[str]) -> list[str]:
    """Send the event to the given consumers of it only (a re-announcement to those that have not handled it)."""
    if app.conf.task_always_eager:
        # Run in this process: the consumers must be registered here. With a broker a consumer unknown here is sent by
        # name; importing the task modules then would make Celery's Django fix-up run django.setup() again inside a
        # worker's task, which reconfigures logging and silences that pool process's log from then on.
        task_modules_load()
    known = event_consumers(event)
    sent = []
    for task_name in consumers:
        if task_name not in known:
            raise ValueError(f"{task_name!r} does not consume {event!r}")
        task = app.tasks.get(task_name)
        if task is None:
            if app.conf.task_always_eager:
                logger.error("event %s: consumer task %s is not registered; skipped", event, task_name)
                continue
            app.send_task(task_name, kwargs=payload)  # a worker elsewhere knows it
        else:  # respects task_always_eager in the embedded default
            task.apply_async(kwargs=payload)
        sent.append(task_name)
    logger.info("event %s dispatched to %d consumer(s)", event, len(sent), extra={"event": event})
    return sent


def _outbox_model():
    # Apps import this module while Django loads their models, so the outbox model is looked up when first used.
    from config.models import OutboxEvent

    return OutboxEvent


def publish(event: str, **payload: Any) -> None:
    """Announce ``event`` once the current transaction commits (immediately when there is none). The event is stored
    in the outbox within the caller's transaction first, so a crash or a broker outage after the commit delays it and
    loses nothing (the outbox sweeper sends it again)."""
    event_consumers(event)  # fail fast on a typo, inside the caller's transaction
    outbox = _outbox_model()
    try:
        with transaction.atomic():  # a savepoint: a failed insert leaves the caller's transaction usable
            now = timezone.now()
            row = outbox.objects.create(event=event, payload=payload, created_at=now, due_at=now + outbox_grace())
    except Exception:  # the database may be the thing failing (error alerts); the announcement still goes out
        logger.warning(
            "event %s could not be stored in the outbox; dispatched on commit without it", event, exc_info=True
        )
        try:
            transaction.on_commit(lambda: _dispatch_logged(event, payload))
        except Exception:  # outside any transaction on_commit connects first; with no database, nothing to wait for
            _dispatch_logged(event, payload)
        return
    transaction.on_commit(lambda: _outbox_send(row.pk, event, payload))


def _dispatch_logged(event: str, payload: dict[str, Any]) -> bool:
    """Dispatch after a commit: a failure is logged, never raised to the caller, whose transaction already committed."""
    try:
        dispatch_now(event, payload)
    except Exception:
        logger.warning("event %s was not dispatched", event, exc_info=True, extra={"event": event})
        return False
    return True


def _outbox_send(pk: int, event: str, payload: dict[str, Any]) -> Exception | None:
    """Dispatch a stored event and delete its row; on failure keep the row (with the error) for the sweeper. Returns
    the error of a failed dispatch (None when dispatched); never raises."""
    outbox = _outbox_model()
    try:
        dispatch_now(event, payload)
    except Exception as exc:
        logger.warning(
            "event %s (outbox #%s) stored but not dispatched; the outbox sweeper will send it again",
            event,
            pk,
            exc_info=True,
            extra={"event": event},
        )
        try:
            outbox.objects.filter(pk=pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        except Exception:
            logger.warning("outbox #%s: the failed dispatch could not be recorded", pk, exc_info=True)
        return exc
    try:
        outbox.objects.filter(pk=pk).delete()
    except Exception:  # dispatched; the sweeper sends it once more, and the consumers are idempotent
        logger.warning("outbox #%s: event %s dispatched but its row not deleted", pk, event, exc_info=True)
    return None


def outbox_waiting() -> int:
    """Stored events older than the grace period: their on-commit dispatch failed or never ran (health screens)."""
    return _outbox_model().objects.filter(created_at__lt=timezone.now() - outbox_grace()).count()


def outbox_grace() -> timedelta:
    """How long a stored event is left to its on-commit dispatch before the sweeper takes it."""
    return timedelta(seconds=settings.EVENT_OUTBOX_GRACE_SECONDS)


def outbox_retry_delay(*, waited: timedelta) -> timedelta:
    """The wait before a row's next sweep: as long as it has already waited, between the grace period and
    ``REQUEUE_BACKOFF_MAX_SECONDS``, so a broker outage does not re-send the whole backlog on every sweep."""
    return min(max(waited, outbox_grace()), timedelta(seconds=max(settings.REQUEUE_BACKOFF_MAX_SECONDS, 1)))


def outbox_sweep(*, limit: int | None = None) -> dict[str, int]:
    """Dispatch stored events that are due (their on-commit dispatch never happened or failed), oldest first, at most
    ``limit`` (``EVENT_OUTBOX_BATCH_SIZE``) per call. Each row is claimed first (attempts counted, its next due time
    pushed back) in a short transaction that skips rows another sweeper has locked, then dispatched outside any
    transaction and deleted; a failure keeps it for a later sweep. The sweep stops at the first broker (connection)
    error, as the other rows would fail the same way; a row of an event no longer declared is logged and dropped."""
    outbox = _outbox_model()
    limit = limit or settings.EVENT_OUTBOX_BATCH_SIZE
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            outbox.objects.select_for_update(skip_locked=True)
            .filter(due_at__lte=now)
            .order_by("created_at", "pk")[:limit]
        )
        for row in rows:  # locked (PostgreSQL): no other sweeper changes them meanwhile
            row.attempts += 1
            row.due_at = now + outbox_retry_delay(waited=now - row.created_at)
        outbox.objects.bulk_update(rows, ["attempts", "due_at"])
    dispatched = failed = 0
    for row in rows:
        if row.event not in settings.DOMAIN_EVENT_CONSUMERS:  # a release removed the event: nobody to tell
            logger.error("outbox #%s: unknown event %s dropped (payload %s)", row.pk, row.event, row.payload)
            outbox.objects.filter(pk=row.pk).delete()
            failed += 1
            continue
        error = _outbox_send(row.pk, row.event, row.payload)
        if error is None:
            dispatched += 1
            continue
        failed += 1
        if isinstance(error, transient_errors()):  # the broker (or database) is down: the rest would fail alike
            break
    if rows:
        logger.info(
            "outbox sweep: %d event(s) due, %d dispatched, %d failed (oldest attempted %d time(s))",
            len(rows),
            dispatched,
            failed,
            rows[0].attempts,
        )
    return {"due": len(rows), "dispatched": dispatched, "failed": failed}


def ring(event: str, **payload: Any) -> None:
    """Like ``publish``, for work whose stored row is the truth and a sweeper re-queues: the queue is only a doorbell,
    so a broker that is down when the transaction commits is logged, not raised to the caller (who already stored
    the work and answered for it)."""
    event_consumers(event)
    transaction.on_commit(lambda: _dispatch_logged(event, payload))
