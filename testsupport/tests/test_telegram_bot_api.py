"""The real aiogram client against the local Bot API server, over HTTP."""

import threading
import time

import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BotCommand, BufferedInputFile

from telegram_bridge.transport import get_transport

pytestmark = pytest.mark.django_db


def call(coroutine):
    return get_transport().call(coroutine)


def test_get_me_and_send_message_are_recorded(bot_api):
    bot = get_transport().bot
    assert call(bot.get_me()).username == "perps_local_bot"
    message = call(bot.send_message(chat_id=42, text="<b>Hello</b> &lt;you&gt;"))
    assert message.text == "Hello <you>" and message.chat.id == 42
    [sent] = bot_api.sent_messages(42)
    assert sent["text"] == "<b>Hello</b> &lt;you&gt;" and sent["parse_mode"] == "HTML"
    assert sent["message_id"] == message.message_id


def test_unescaped_html_is_refused_like_telegram(bot_api):
    bot = get_transport().bot
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        call(bot.send_message(chat_id=42, text="<script>alert(1)</script>"))
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        call(bot.send_message(chat_id=42, text="fish & chips"))
    with pytest.raises(TelegramBadRequest, match="too long"):
        call(bot.send_message(chat_id=42, text="x" * 4097))
    assert bot_api.sent_messages() == []


def test_rate_limit_answers_429_with_retry_after_and_counts_violations(bot_api):
    bot_api.set_rate_limit(2, burst=1)
    bot = get_transport().bot
    call(bot.send_message(chat_id=1, text="first"))
    with pytest.raises(TelegramRetryAfter) as error:
        call(bot.send_message(chat_id=2, text="too fast"))
    assert error.value.retry_after == 1
    with pytest.raises(TelegramRetryAfter):  # chat 2 again before its retry_after: a violation
        call(bot.send_message(chat_id=2, text="still too fast"))
    assert bot_api.stats["violations"] == 1
    time.sleep(1.05)
    call(bot.send_message(chat_id=2, text="honoured"))
    assert [m["text"] for m in bot_api.sent_messages()] == ["first", "honoured"]


def test_blocked_chat_gets_403_and_transient_errors_are_5xx(bot_api):
    bot_api.block_chat(99)
    bot = get_transport().bot
    with pytest.raises(TelegramForbiddenError, match="blocked by the user"):
        call(bot.send_message(chat_id=99, text="hi"))
    bot_api.fail_next(1, status=502)
    with pytest.raises(TelegramServerError):
        call(bot.send_message(chat_id=98, text="hi"))
    call(bot.send_message(chat_id=98, text="hi"))
    assert len(bot_api.sent_messages(98)) == 1


def test_long_polling_waits_for_an_injected_update_and_confirms_by_offset(bot_api):
    bot = get_transport().bot
    threading.Timer(0.3, lambda: bot_api.inject_message(user_id=5, text="/start")).start()
    started = time.monotonic()
    updates = call(bot.get_updates(timeout=5))
    assert 0.2 < time.monotonic() - started < 4
    assert updates[0].message.text == "/start" and updates[0].message.from_user.id == 5
    again = call(bot.get_updates(offset=updates[0].update_id, timeout=0))
    assert [u.update_id for u in again] == [updates[0].update_id]  # not confirmed yet
    assert call(bot.get_updates(offset=updates[0].update_id + 1, timeout=0)) == []


def test_edit_delete_answer_commands_photo_and_webhook(bot_api):
    bot = get_transport().bot
    message = call(bot.send_message(chat_id=7, text="one"))
    call(bot.edit_message_text(chat_id=7, message_id=message.message_id, text="two"))
    with pytest.raises(TelegramBadRequest, match="not modified"):
        call(bot.edit_message_text(chat_id=7, message_id=message.message_id, text="two"))
    assert call(bot.delete_message(chat_id=7, message_id=message.message_id)) is True
    with pytest.raises(TelegramBadRequest, match="not found"):
        call(bot.edit_message_text(chat_id=7, message_id=message.message_id, text="three"))
    assert call(bot.answer_callback_query(callback_query_id="abc", text="ok")) is True
    assert call(bot.set_my_commands(commands=[BotCommand(command="start", description="go")])) is True
    assert bot_api.commands == [{"command": "start", "description": "go"}]
    photo = call(bot.send_photo(chat_id=7, photo=BufferedInputFile(b"\x89PNG fake", filename="c.png"), caption="<b>c</b>"))
    assert photo.caption == "c" and bot_api.sent_messages(7)[-1]["photo"]["size"] == 9
    call(bot.set_webhook(url="http://127.0.0.1:1/hook", secret_token="s3cret"))
    with pytest.raises(TelegramConflictError):
        call(bot.get_updates(timeout=0))
    call(bot.delete_webhook())
    assert call(bot.get_updates(timeout=0)) == []
