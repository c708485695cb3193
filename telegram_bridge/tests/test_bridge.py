"""The polling bridge: stall watchdog, prompt stop, graceful shutdown of the real process (no unclosed sessions)."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import TelegramUser
from telegram_bridge.bridge import Poller
from telegram_bridge.transport import get_transport

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_watchdog_restarts_a_stalled_session_and_the_update_still_arrives(bot_api, caplog):
    bot_api.stall_next_get_updates(1, seconds=20)  # the first long poll never answers (half-open connection)
    bot_api.inject_message(user_id=701, text="/help")
    session_before = get_transport().bot.session
    started = time.monotonic()
    report = Poller(timeout=1, stall_seconds=0.5).run(max_updates=1)
    elapsed = time.monotonic() - started
    assert report.restarts == 1 and report.handled == 1
    assert elapsed < 6, elapsed  # timeout 1 s + stall 0.5 s, then a fresh session answers at once
    assert get_transport().bot.session is not session_before and session_before._session.closed  # old one closed
    assert bot_api.stats["stalled"] == 1
    assert "Help centre" in bot_api.sent_messages(701)[0]["text"]
    assert "getUpdates stalled" in caplog.text


@pytest.mark.django_db
def test_a_healthy_long_poll_is_never_taken_for_a_stall(bot_api):
    threading.Timer(1.2, lambda: bot_api.inject_message(user_id=702, text="/start")).start()
    report = Poller(timeout=2, stall_seconds=0.5).run(max_updates=1)
    assert report.restarts == 0 and report.handled == 1


@pytest.mark.django_db
def test_stop_cancels_the_in_flight_long_poll_at_once(bot_api):
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    report = Poller(timeout=25, stop=stop).run()
    assert time.monotonic() - started < 3 and report.handled == 0


def _database_url(db: dict) -> str:
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{port}/{db['NAME']}"


@pytest.mark.slow
def test_run_bridge_process_answers_then_shuts_down_cleanly_on_sigterm(bot_api, postgres_database, redis_url):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DATABASE_URL": _database_url(postgres_database),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": "",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "TELEGRAM_API_BASE": bot_api.base_url,
        "TELEGRAM_BOT_TOKEN": "",
        "PYTHONWARNINGS": "always",  # ResourceWarnings ("Unclosed client session", unclosed sockets) are printed
        "PYTHONDEVMODE": "1",
    }
    bridge = subprocess.Popen(
        [sys.executable, "manage.py", "run_bridge", "--timeout", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not bot_api.calls_of("getWebhookInfo") and time.monotonic() < deadline:
            assert bridge.poll() is None, bridge.communicate()
            time.sleep(0.1)
        bot_api.inject_message(user_id=703, text="/start", first_name="Proc")
        while not bot_api.sent_messages(703) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bot_api.sent_messages(703), "the bridge process did not answer"
        time.sleep(0.5)  # the bridge is back in a 20 s long poll
        stopped_at = time.monotonic()
        bridge.send_signal(signal.SIGTERM)
        stdout, stderr = bridge.communicate(timeout=20)
        stop_seconds = time.monotonic() - stopped_at
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.communicate()
    assert bridge.returncode == 0, stderr
    assert stop_seconds < 8, stop_seconds  # the long poll was cancelled, not waited out
    assert "Stopped after 1 update(s)" in stdout
    for leak in (
        "Unclosed client session",
        "Unclosed connector",
        "unclosed <socket",
        "unclosed event loop",
        "Task was destroyed but it is pending",
    ):
        assert leak not in stderr, stderr
    assert "Welcome, <b>Proc</b>" in bot_api.sent_messages(703)[0]["text"]
    assert TelegramUser.objects.filter(telegram_id=703).exists()
    assert bot_api.commands  # the command menu was set at start


@pytest.mark.django_db
def test_polling_beats_the_bridge_heartbeat_that_bridge_health_checks(bot_api):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="never"):
        call_command("bridge_health")
    bot_api.inject_message(user_id=704, text="/help")
    assert Poller(timeout=1).run(max_updates=1).handled == 1
    call_command("bridge_health", max_age=60)
    from analytics.models import Heartbeat

    Heartbeat.objects.filter(name="bridge").update(beat_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(CommandError, match="unhealthy"):
        call_command("bridge_health", max_age=120)
