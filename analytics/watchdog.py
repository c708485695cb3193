"""The beat-driven watchdog: notices a stale worker heartbeat or a market scan that did not run, re-queues the
missing work and tells the admins in Telegram.

``watchdog_check`` runs every minute (``analytics.tasks.watchdog``, beat entry ``watchdog``). It only reads state
and sends tasks; each re-queue has a cool-down in the cache so a long outage does not pile up copies, and re-running
is safe because the heartbeat is an upsert and a scan creates each signal once (its dedupe key). Admin alerts go
through ``accounts.services.admins_notify`` with a dedupe key per problem and hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.services import admins_notify
from analytics.selectors import heartbeat_age_seconds
from config import probes
from config.celery import app
from signals.selectors import scan_run_latest

logger = logging.getLogger(__name__)

HEARTBEAT_TASK = "analytics.tasks.heartbeat"
SCAN_TASK = "signals.tasks.scan_markets"


@dataclass
class WatchdogReport:
    checked_at: datetime
    heartbeat_age_seconds: float | None = None
    heartbeat_stale: bool = False
    last_scan_started_at: datetime | None = None
    scan_missed: bool = False
    scan_stuck: bool = False
    requeued: list[str] = field(default_factory=list)
    admins_told: int = 0

    @property
    def healthy(self) -> bool:
        return not (self.heartbeat_stale or self.scan_missed or self.scan_stuck)


def _requeue(task_name: str, *, queue: str) -> bool:
    """Send ``task_name`` again unless it was re-queued within the cool-down."""
    if not cache.add(f"watchdog:requeued:{task_name}", 1, settings.WATCHDOG_REQUEUE_COOLDOWN_SECONDS):
        return False

    app.send_task(task_name, queue=queue)
    logger.warning("watchdog: re-queued %s on %s", task_name, queue)
    return True


def _scan_state(now: datetime) -> tuple[datetime | None, bool, bool]:
    """(latest scan start, missed, stuck). Missed: no scan started within WATCHDOG_SCAN_MAX_AGE_SECONDS; stuck: the
    latest scan started over WATCHDOG_SCAN_STUCK_SECONDS ago and its batches never all reported."""
    if not settings.WATCHDOG_SCAN_MAX_AGE_SECONDS:
        return None, False, False

    latest = next(iter(scan_run_latest(limit=1)), None)
    if latest is None:
        return None, True, False
    missed = latest.started_at < now - timedelta(seconds=settings.WATCHDOG_SCAN_MAX_AGE_SECONDS)
    stuck = (
        not missed
        and latest.finished_at is None
        and latest.started_at < now - timedelta(seconds=settings.WATCHDOG_SCAN_STUCK_SECONDS)
    )
    return latest.started_at, missed, stuck


def watchdog_check(*, now: datetime | None = None) -> WatchdogReport:
    now = now or timezone.now()
    report = WatchdogReport(checked_at=now)
    age = heartbeat_age_seconds()
    report.heartbeat_age_seconds = age
    report.heartbeat_stale = age is None or age > settings.HEARTBEAT_MAX_AGE_SECONDS
    report.last_scan_started_at, report.scan_missed, report.scan_stuck = _scan_state(now)

    problems: list[str] = []
    if report.heartbeat_stale:
        if _requeue(HEARTBEAT_TASK, queue="default"):
            report.requeued.append(HEARTBEAT_TASK)
        problems.append("worker heartbeat " + ("never seen" if age is None else f"{age:.0f} s old"))
    if report.scan_missed or report.scan_stuck:
        if _requeue(SCAN_TASK, queue="scan"):
            report.requeued.append(SCAN_TASK)
        started = report.last_scan_started_at
        since = "never" if started is None else f"{(now - started).total_seconds() / 60:.0f} min ago"
        problems.append(
            ("market scan did not finish" if report.scan_stuck else "market scan did not run")
            + f" (last start: {since})"
        )
    if problems:
        logger.warning("watchdog: %s; re-queued %s", "; ".join(problems), report.requeued or "nothing (cool-down)")
        text = "🐕 <b>Watchdog</b>\n" + "\n".join(f"• {escape(p)}" for p in problems)
        if report.requeued:
            text += "\nRe-queued: " + ", ".join(f"<code>{escape(n)}</code>" for n in report.requeued)
        kinds = "+".join(
            sorted(
                k
                for k, bad in (("heartbeat", report.heartbeat_stale), ("scan", report.scan_missed or report.scan_stuck))
                if bad
            )
        )
        report.admins_told = admins_notify(text=text, dedupe_key=f"watchdog:{kinds}:{now:%Y%m%d%H}")
    cache.set(
        "watchdog:last_report",
        {"checked_at": now.isoformat(), "healthy": report.healthy, "requeued": report.requeued},
        24 * 3600,
    )
    return report


# --- health checks of the processes (``manage.py healthcheck <component>``, used by compose and systemd) ---------
COMPONENTS = ("web", "worker", "beat", "bridge")


@dataclass(frozen=True)
class ComponentHealth:
    component: str
    ok: bool
    detail: str


def _beat_last_sent_age(now: datetime) -> float | None:
    """Seconds since beat last sent the heartbeat task (django-celery-beat stores it; synced every few minutes)."""
    from django_celery_beat.models import PeriodicTask

    last = PeriodicTask.objects.filter(task=HEARTBEAT_TASK).values_list("last_run_at", flat=True).first()
    return None if last is None else (now - last).total_seconds()


def component_health(component: str, *, now: datetime | None = None) -> ComponentHealth:
    """Is this kind of process doing its job? Reads only; what each check proves:

    * web: the database answers (the HTTP side is probed on /healthz and /readyz);
    * worker: the database and broker answer and a worker ran the heartbeat recently;
    * beat: beat sent the heartbeat task recently (django-celery-beat's last_run_at) or a worker ran it;
    * bridge: the database and broker answer, and the bridge's own heartbeat (``Heartbeat`` ``bridge``, recorded after
      each getUpdates answer by telegram_bridge.bridge) is fresh.
    """
    now = now or timezone.now()
    if component not in COMPONENTS:
        return ComponentHealth(component, False, f"unknown component (one of {', '.join(COMPONENTS)})")
    if not probes.database_ok():
        return ComponentHealth(component, False, "database unreachable")
    if component == "web":
        return ComponentHealth(component, True, "database ok")
    broker = probes.broker_ok()
    if broker is False:
        return ComponentHealth(component, False, "broker unreachable")
    max_age = settings.HEARTBEAT_MAX_AGE_SECONDS
    worker_age = heartbeat_age_seconds(name="worker")
    if component == "worker":
        fresh = worker_age is not None and worker_age <= max_age
        return ComponentHealth(component, fresh, f"worker heartbeat {_age_text(worker_age)}")
    if component == "beat":
        sent_age = _beat_last_sent_age(now)
        fresh = (sent_age is not None and sent_age <= max_age + BEAT_SYNC_SECONDS) or (
            worker_age is not None and worker_age <= max_age
        )
        return ComponentHealth(
            component, fresh, f"heartbeat sent by beat {_age_text(sent_age)}, run by a worker {_age_text(worker_age)}"
        )
    bridge_age = heartbeat_age_seconds(name="bridge")
    fresh = bridge_age is not None and bridge_age <= max_age
    return ComponentHealth(
        component, fresh, f"broker {'ok' if broker else 'not used'}, bridge heartbeat {_age_text(bridge_age)}"
    )


BEAT_SYNC_SECONDS = 180  # django-celery-beat writes last_run_at back at most this late


def _age_text(age: float | None) -> str:
    return "never" if age is None else f"{age:.0f} s ago"
