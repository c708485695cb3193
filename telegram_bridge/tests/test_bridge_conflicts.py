"""Polling and webhook exclude each other, as in Telegram: the one that loses says why in one sentence, no traceback."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.services import heartbeat_record
from telegram_bridge.bridge import HEARTBEAT_NAME, BridgeConflict, Poller
from telegram_bridge.management.commands.run_bridge import CONFLICT_EXIT_STATUS

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Webhook-Secret_1"
pytestmark = pytest.mark.django_db


def _poll_in_thread(**options) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def poll():
        try:
            outcome["report"] = Poller(**options).run()
        except BaseException as error:  # the test reads it
            outcome["error"] = error

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for_poll(bot_api, polls: int = 1) -> None:
    deadline = time.monotonic() + 10
    while bot_api._poll_generation < polls and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)


def test_registering_a_webhook_stops_the_running_poller_with_one_clear_message(bot_api, settings, capsys):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    generation = bot_api._poll_generation
    thread, outcome = _poll_in_thread(timeout=1)
    _wait_for_poll(bot_api, generation + 1)
    heartbeat_record(name=HEARTBEAT_NAME)  # as the poller does (its thread cannot share the test's transaction)
    call_command("run_bridge", webhook="https://bot.example.com/telegram/webhook")
    thread.join(10)
    assert not thread.is_alive()
    error = outcome["error"]
    assert isinstance(error, BridgeConflict)
    assert str(error).startswith(
        "Telegram delivers this bot's updates to the webhook https://bot.example.com/telegram/webhook"
    )
    assert "run_bridge --delete-webhook" in str(error)
    said = capsys.readouterr().out
    assert "Webhook registered" in said and "A polling bridge was active" in said and "disable" in said
    assert bot_api.webhook["url"] == "https://bot.example.com/telegram/webhook"  # the webhook won, as in Telegram


def test_a_poller_started_while_a_webhook_is_registered_refuses_and_keeps_the_webhook(bot_api, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    call_command("run_bridge", webhook="https://bot.example.com/telegram/webhook")
    with pytest.raises(CommandError) as refused:
        call_command("run_bridge", timeout=1)
    assert refused.value.returncode == CONFLICT_EXIT_STATUS
    assert "the webhook https://bot.example.com/telegram/webhook" in str(refused.value)
    assert bot_api.webhook["url"] == "https://bot.example.com/telegram/webhook"
    assert not bot_api.calls_of("deleteWebhook")


def test_delete_webhook_switches_back_to_polling(bot_api, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    call_command("run_bridge", webhook="https://bot.example.com/telegram/webhook")
    bot_api.inject_message(user_id=711, text="/help")
    call_command("run_bridge", timeout=1, max_updates=1, delete_webhook=True)
    assert bot_api.webhook["url"] == "" and bot_api.calls_of("deleteWebhook")
    assert "Help centre" in bot_api.sent_messages(711)[0]["text"]


def test_a_second_poller_takes_over_and_the_first_stops_with_one_clear_message(bot_api):
    generation = bot_api._poll_generation
    first, outcome = _poll_in_thread(timeout=5)
    _wait_for_poll(bot_api, generation + 1)
    threading.Timer(0.5, lambda: bot_api.inject_message(user_id=712, text="/help")).start()
    report = Poller(timeout=5).run(max_updates=1)  # the second bridge (here: in the test's thread, with its database)
    first.join(10)
    assert isinstance(outcome["error"], BridgeConflict)
    assert "Another process started polling this bot's updates" in str(outcome["error"])
    assert report.handled == 1 and "Help centre" in bot_api.sent_messages(712)[0]["text"]  # the newer one serves


def _one_clear_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "TelegramConflictError" not in stderr, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("CommandError")]
    return line


@pytest.mark.slow
def test_run_bridge_process_stops_with_status_3_and_one_line_when_a_webhook_is_registered(bot_api, settings, tmp_path):
    """The real process against the local server: `run_bridge --webhook` while `run_bridge` polls ends the poller
    with exit status 3 (the systemd unit does not restart on it) and one line on stderr, no traceback."""
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "TELEGRAM_API_BASE": bot_api.base_url,
        "TELEGRAM_BOT_TOKEN": "",
    }
    generation = bot_api._poll_generation
    poller = subprocess.Popen(
        [sys.executable, "manage.py", "run_bridge", "--timeout", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # a loaded 2-core machine takes 10+ s to start Django
        while bot_api._poll_generation == generation and time.monotonic() < deadline:
            assert poller.poll() is None, poller.communicate()
            time.sleep(0.1)
        time.sleep(0.5)  # in its 20 s long poll
        call_command("run_bridge", webhook="https://bot.example.com/telegram/webhook")
        _, stderr = poller.communicate(timeout=30)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.communicate()
    assert poller.returncode == CONFLICT_EXIT_STATUS, stderr
    assert "Traceback" not in stderr and "TelegramConflictError" not in stderr, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("CommandError")]
    assert line.startswith(
        "CommandError: Telegram delivers this bot's updates to the webhook https://bot.example.com/telegram/webhook"
    )
    assert "run_bridge --delete-webhook" in line
