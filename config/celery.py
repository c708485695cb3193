"""The Celery application: configured from Django settings (CELERY_* names), tasks discovered in every app."""

import logging
import os
import random
import signal
import threading
import time

from celery import Celery, Task, signals
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger("perps.tasks")

# --- Reliability policy ------------------------------------------------------------------------------------------
# Applied to every task when it is registered (``ReliableTask.bind``), in every process (web, worker, beat), so a
# task declared without these options still gets them (config/tests/test_celery_policy.py inspects every task):
# * tasks on the ``trade`` and ``telegram`` queues ack late and are rejected (re-queued) when their worker dies, so a
#   kill -9 mid-task re-runs it; their services are idempotent (unique constraints, dedupe keys);
# * every task has a hard time limit and a soft one below it (the soft one raises inside the task first; a soft
#   limit above the hard one would even make ``apply_async`` raise);
# * tasks that retry on errors back off exponentially with jitter, a bounded number of times.
RELIABLE_QUEUES = frozenset({"trade", "telegram"})
MAX_TASK_TIME_LIMIT = 3600


def task_queue_name(task_name: str, *, task=None) -> str:
    """The queue a task goes to: CELERY_TASK_ROUTES first, then the task's own ``queue``, then the default queue."""
    for route in app.amqp.router.routes:
        found = route(task_name, (), {}, {}, task=None)
        if found and found.get("queue"):
            queue = found["queue"]
            return getattr(queue, "name", queue)
    if task is None:
        task = app.tasks.get(task_name)
    return getattr(task, "queue", None) or app.conf.task_default_queue


def task_policy_apply(task) -> None:
    """Late acks on reliable queues, a soft time limit below the hard one, jittered backoff (class or instance)."""
    if task_queue_name(task.name, task=task) in RELIABLE_QUEUES:
        task.acks_late = True
        task.reject_on_worker_lost = True
    hard = task.time_limit or app.conf.task_time_limit or 300
    task.time_limit = hard
    soft = task.soft_time_limit or app.conf.task_soft_time_limit
    task.soft_time_limit = soft if soft and soft < hard else max(hard - max(hard // 10, 5), 1)
    if getattr(task, "autoretry_for", None):
        if not getattr(task, "retry_backoff", False):
            task.retry_backoff = True
        task.retry_jitter = True
        if getattr(task, "retry_backoff_max", None) is None:
            task.retry_backoff_max = 600


def apply_reliability_policy(tasks=None) -> None:
    for name, task in (tasks or app.tasks).items():
        if not name.startswith("celery."):
            task_policy_apply(task)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Infrastructure errors that go away by themselves: Redis (cache, broker) or PostgreSQL briefly unreachable."""
    import django.db
    import kombu.exceptions
    import redis.exceptions

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,
        django.db.OperationalError,
        django.db.InterfaceError,
    )


def transient_retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in (0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.1, min(TRANSIENT_RETRY_CAP_SECONDS, TRANSIENT_RETRY_BASE_SECONDS * 2**attempt))


TRANSIENT_RETRIES = 6
TRANSIENT_RETRY_BASE_SECONDS = 0.5
TRANSIENT_RETRY_CAP_SECONDS = 8.0


class ReliableTask(Task):
    """The base class of every task of this app: applies the reliability policy when the task is registered, and
    re-runs the task body in place when Redis or PostgreSQL drops out for a moment (exponential backoff with jitter,
    ``TRANSIENT_RETRIES`` times). In place, not through the broker: the broker may be the thing that is down. Tasks
    are idempotent (domain-event consumers must be), so a re-run after a half-done attempt is safe."""

    @classmethod
    def bind(cls, app):
        bound = super().bind(app)
        if cls.name and not cls.name.startswith("celery."):
            task_policy_apply(cls)
        return bound

    def __call__(self, *args, **kwargs):
        if self.request.is_eager or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        errors = transient_errors()
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:  # the worker's tracer already pushed this task's request; keep it (retries count, id)
                return self.run(*args, **kwargs)
            except errors as exc:
                if attempt == TRANSIENT_RETRIES:
                    raise
                delay = transient_retry_delay(attempt)
                logger.warning(
                    "task %s: transient %s (%s); attempt %d again in %.1f s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    attempt + 2,
                    delay,
                )
                _drop_broken_database_connections()
                time.sleep(delay)
        raise AssertionError("unreachable")


def _drop_broken_database_connections() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            connection.close_if_unusable_or_obsolete()


app = Celery("perps", task_cls=ReliableTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("scan", "trade", "telegram", "default")]
app.autodiscover_tasks()


# Tasks that live outside the apps' tasks modules.
app.conf.imports = ("web.live_updates", "signals.tasks_flow", "trading.tasks_live")


@signals.worker_shutting_down.connect
def _bound_the_warm_shutdown(sig=None, how=None, **_):
    """SIGTERM starts Celery's warm shutdown, which waits for the running tasks however long they take (a backtest
    may take an hour); a service manager would SIGKILL the worker first. After WORKER_SHUTDOWN_GRACE_SECONDS this
    turns it into Celery's cold shutdown (the SIGQUIT path): the running tasks are cancelled, acks_late ones go back
    to their queue (trade, telegram), the sweepers re-queue what the others left undone, and the worker exits."""
    from django.conf import settings

    if how != "Warm":
        return
    grace = settings.WORKER_SHUTDOWN_GRACE_SECONDS
    pid = os.getpid()

    def escalate():
        logger.warning("worker: tasks still running %.0f s after SIGTERM; cancelling them (cold shutdown)", grace)
        os.kill(pid, signal.SIGQUIT)

    timer = threading.Timer(grace, escalate)
    timer.daemon = True
    timer.start()


@signals.worker_init.connect
def _apply_reliability_policy_in_worker(sender=None, **_):
    """Belt and braces: after the worker imported every tasks module, check the policy holds for all of them."""
    apply_reliability_policy()
