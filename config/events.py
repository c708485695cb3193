"""Domain events: a state change is announced once and each subscriber gets it through its own Celery task.

Subscribers are listed in ``settings.DOMAIN_EVENT_CONSUMERS`` (event name -> task names), so no app imports another
app's tasks. Events are dispatched only after the surrounding transaction commits; consumers must be idempotent
(they are keyed by the entity id), because the publisher may announce an event again after a crash (see
``signals.services.signal_publish_pending``).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction

from config.celery import app

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


def publish(event: str, **payload: Any) -> None:
    """Announce ``event`` once the current transaction commits (immediately when there is none)."""
    event_consumers(event)  # fail fast on a typo, inside the caller's transaction
    transaction.on_commit(lambda: dispatch_now(event, payload))


def ring(event: str, **payload: Any) -> None:
    """Like ``publish``, for work whose stored row is the truth and a sweeper re-queues: the queue is only a doorbell,
    so a broker that is down when the transaction commits is logged, not raised to the caller (who already stored
    the work and answered for it)."""
    event_consumers(event)

    def dispatch() -> None:
        try:
            dispatch_now(event, payload)
        except Exception:
            logger.warning("event %s stored but not queued; its sweeper will pick it up", event, exc_info=True)

    transaction.on_commit(dispatch)
