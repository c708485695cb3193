"""The beat watchdog: stale heartbeat / missed or stuck scan → re-queue once per cool-down and tell the admins."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from accounts.tests.factories import TelegramUserFactory
from analytics import tasks
from analytics.services import heartbeat_record
from analytics.watchdog import HEARTBEAT_TASK, SCAN_TASK, watchdog_check
from signals.models import ScanRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    from config.celery import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: calls.append((name, options["queue"])))
    cache.delete_many([f"watchdog:requeued:{HEARTBEAT_TASK}", f"watchdog:requeued:{SCAN_TASK}"])
    yield calls
    cache.delete_many([f"watchdog:requeued:{HEARTBEAT_TASK}", f"watchdog:requeued:{SCAN_TASK}"])


@pytest.fixture
def alerts(monkeypatch):
    calls = []
    monkeypatch.setattr("accounts.services.publish", lambda event, **payload: calls.append((event, payload)))
    return calls


def _scan(*, minutes_ago: float, finished: bool = True) -> ScanRun:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return ScanRun.objects.create(
        source="replay",
        scan_time=started,
        started_at=started,
        batches_total=1,
        batches_done=1 if finished else 0,
        finished_at=started if finished else None,
    )


def test_all_fresh_means_nothing_to_do(sent, alerts):
    TelegramUserFactory(is_admin=True)
    heartbeat_record(name="worker")
    _scan(minutes_ago=3)
    report = watchdog_check()
    assert report.healthy and report.requeued == [] and report.admins_told == 0
    assert sent == [] and alerts == []


def test_stale_heartbeat_is_requeued_once_per_cooldown_and_admins_are_told(sent, alerts, settings):
    admin = TelegramUserFactory(is_admin=True)
    TelegramUserFactory(is_admin=False)
    heartbeat_record(name="worker", at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_MAX_AGE_SECONDS + 60))
    _scan(minutes_ago=1)
    report = watchdog_check()
    assert report.heartbeat_stale and not report.scan_missed
    assert sent == [(HEARTBEAT_TASK, "default")]
    assert [(e, p["user_id"]) for e, p in alerts] == [("user.notify", admin.pk)]
    assert "heartbeat" in alerts[0][1]["text"] and alerts[0][1]["dedupe_key"].startswith("watchdog:heartbeat:")
    again = watchdog_check()  # still stale a minute later: no second copy while the first may still be queued
    assert again.heartbeat_stale and again.requeued == [] and len(sent) == 1


def test_missed_scan_is_requeued_on_the_scan_queue(sent, alerts):
    TelegramUserFactory(is_admin=True)
    heartbeat_record(name="worker")
    _scan(minutes_ago=31)
    report = watchdog_check()
    assert report.scan_missed and not report.heartbeat_stale
    assert sent == [(SCAN_TASK, "scan")]
    assert "did not run" in alerts[0][1]["text"]


def test_scan_that_never_finished_is_requeued(sent, alerts):
    heartbeat_record(name="worker")
    _scan(minutes_ago=12, finished=False)
    report = watchdog_check()
    assert report.scan_stuck and sent == [(SCAN_TASK, "scan")]


def test_no_scan_ever_counts_as_missed_unless_disabled(sent, alerts, settings):
    heartbeat_record(name="worker")
    assert watchdog_check().scan_missed
    settings.WATCHDOG_SCAN_MAX_AGE_SECONDS = 0
    cache.delete(f"watchdog:requeued:{SCAN_TASK}")
    assert watchdog_check().healthy


def test_task_is_scheduled_by_beat_and_thin(sent, alerts, settings):
    assert settings.CELERY_BEAT_SCHEDULE["watchdog"]["task"] == "analytics.tasks.watchdog"
    heartbeat_record(name="worker")
    _scan(minutes_ago=1)
    assert tasks.watchdog.run() == {"healthy": True, "requeued": [], "admins_told": 0}


@pytest.mark.parametrize("component", ["web", "worker", "beat", "bridge"])
def test_healthcheck_command_is_healthy_when_the_heartbeats_are_fresh(component, capsys):
    from django.core.management import call_command

    heartbeat_record(name="worker")
    heartbeat_record(name="bridge")
    call_command("healthcheck", component)
    assert f"{component}: ok" in capsys.readouterr().out


def test_healthcheck_command_fails_on_stale_heartbeats(settings, capsys):
    from django.core.management import call_command
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    old = timezone.now() - timedelta(hours=2)
    heartbeat_record(name="worker", at=old)
    heartbeat_record(name="bridge", at=old)
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="heartbeat-test", task=HEARTBEAT_TASK, interval=every, last_run_at=old)
    for component in ("worker", "beat", "bridge"):
        with pytest.raises(SystemExit) as exit_info:
            call_command("healthcheck", component)
        assert exit_info.value.code == 1
        assert f"{component}: UNHEALTHY" in capsys.readouterr().out
    PeriodicTask.objects.filter(task=HEARTBEAT_TASK).update(last_run_at=timezone.now())
    call_command("healthcheck", "beat")  # beat is sending; only the worker is behind


def test_healthcheck_fails_when_the_database_is_down(monkeypatch):
    from analytics import watchdog
    from config import probes

    monkeypatch.setattr(probes, "database_ok", lambda: False)
    health = watchdog.component_health("web")
    assert not health.ok and health.detail == "database unreachable"
