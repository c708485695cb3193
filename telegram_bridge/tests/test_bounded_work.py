"""Bounded work per update: a hostile number is refused by its shape at once; the polling bridge handles different
users concurrently (each user's updates in order); an update over the time limit is stopped, its late replies
dropped, and the user told so at once."""

import threading
import time

import pytest

from accounts.models import TelegramUser
from accounts.tests.factories import TelegramUserFactory
from telegram_bridge import commands
from telegram_bridge.bridge import polling_run
from telegram_bridge.dispatch import TIME_LIMIT_TEXT, UpdateDispatcher, update_sender_key
from telegram_bridge.tests.bot_helpers import press, say


def _message(update_id: int, user_id: int, text: str) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "text": text,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "U"},
        },
    }


def _wait_for(condition, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["1e1000000", "9" * 4000, "NaN", "-inf", "1_0"])
def test_a_hostile_leverage_is_refused_at_once_with_the_allowed_range(bot_api, settings, text):
    settings.MAX_LEVERAGE = 20
    say(bot_api, 601, "/settings")
    press(bot_api, 601, "s:i:leverage")
    started = time.perf_counter()
    replies = say(bot_api, 601, text)
    assert time.perf_counter() - started < 2.0  # was 32 s for 1e1000000 (int(Decimal(text)) before any range check)
    assert "Leverage must be a whole number from 1x to 20x" in replies[0]["text"]
    assert TelegramUser.objects.get(telegram_id=601).preferences.leverage == 5  # nothing saved


def test_the_sender_is_the_queue_key():
    assert update_sender_key(_message(1, 42, "hi")) == "user:42"
    assert update_sender_key({"update_id": 7, "callback_query": {"from": {"id": 43}}}) == "user:43"
    assert update_sender_key({"update_id": 8, "channel_post": {}}) == "update:8"


def test_one_slow_user_does_not_delay_another_and_each_user_keeps_their_order():
    release = threading.Event()
    handled: list[tuple[str, float]] = []
    lock = threading.Lock()

    def handle(update):
        text = update["message"]["text"]
        if text == "slow":
            release.wait(5)
        with lock:
            handled.append((f"{update['message']['from']['id']}:{text}", time.monotonic()))

    dispatcher = UpdateDispatcher(workers=4, time_limit=30, handle=handle)
    dispatcher.submit(_message(1, 100, "slow"))
    dispatcher.submit(_message(2, 100, "after-slow"))
    dispatcher.submit(_message(3, 200, "quick"))
    assert dispatcher.submit(_message(3, 200, "quick")) is False  # getUpdates returned it again: not twice
    _wait_for(lambda: any(name == "200:quick" for name, _ in handled), timeout=2)
    assert [name for name, _ in handled] == ["200:quick"]  # user 200 answered while user 100's update still runs
    assert dispatcher.confirm_offset(next_offset=4) == 2  # update 2 has not started: not confirmed yet
    release.set()
    assert dispatcher.close(timeout=5)
    assert [name for name, _ in handled] == ["200:quick", "100:slow", "100:after-slow"]
    assert dispatcher.confirm_offset(next_offset=4) == 4


def test_a_handler_over_the_time_limit_is_cut_off_and_the_next_update_runs():
    handled = []

    def handle(update):
        if update["message"]["text"] == "forever":
            while True:  # Python-level work: stopped at the time limit
                time.sleep(0.01)
        handled.append(update["update_id"])

    dispatcher = UpdateDispatcher(workers=1, time_limit=0.3, handle=handle)
    started = time.monotonic()
    dispatcher.submit(_message(1, 300, "forever"))  # inline: runs in this thread and is stopped here
    dispatcher.submit(_message(2, 300, "next"))
    assert time.monotonic() - started < 3
    assert handled == [2] and dispatcher.cut_off == 1


@pytest.mark.django_db(transaction=True)
def test_a_slow_command_is_stopped_the_user_is_told_and_its_late_reply_is_dropped(bot_api, monkeypatch):
    TelegramUserFactory(telegram_id=401)

    def slow_status(ctx, args):
        ctx.reply("late status")
        time.sleep(1.5)  # blocked in C: the user is told at the limit, the reply queued before is never sent

    monkeypatch.setitem(commands.COMMAND_HANDLERS, "status", slow_status)
    dispatcher = UpdateDispatcher(workers=2, time_limit=0.3)
    started = time.monotonic()
    dispatcher.submit(_message(1, 401, "/status"))
    told_after = _wait_for(lambda: bot_api.sent_messages(401))
    assert told_after < 1.2  # before the handler returned
    assert dispatcher.close(timeout=10)
    texts = [m["text"] for m in bot_api.sent_messages(401)]
    assert texts == [TIME_LIMIT_TEXT]
    assert time.monotonic() - started >= 1.5 and dispatcher.cut_off == 1


def test_the_polling_bridge_answers_other_users_while_one_update_is_slow(bot_api, postgres_database, monkeypatch):
    """Concurrent writers: PostgreSQL (SQLite's shared in-memory test database locks whole tables)."""
    release = threading.Event()

    def slow_status(ctx, args):
        release.wait(10)
        ctx.reply("status done")

    monkeypatch.setitem(commands.COMMAND_HANDLERS, "status", slow_status)
    bot_api.inject_message(user_id=501, text="/status")
    bot_api.inject_message(user_id=502, text="/help")
    handled = []
    poller = threading.Thread(target=lambda: handled.append(polling_run(timeout=1, max_updates=2, concurrency=4)))
    poller.start()
    try:
        _wait_for(lambda: bot_api.sent_messages(502), timeout=10)  # /help answered while /status still waits
        assert bot_api.sent_messages(501) == []
    finally:
        release.set()
        poller.join(30)
    assert handled == [2]
    assert [m["text"] for m in bot_api.sent_messages(501)] == ["status done"]
