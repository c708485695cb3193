"""A message that looks like an API key is deleted whatever the conversation state, and the bot says "deleted" only
when Telegram confirmed the deletion. Driven through the local Bot API server and the polling bridge."""

from __future__ import annotations

import pytest

from telegram_bridge.bridge import polling_run
from telegram_bridge.conversations import conversation_end, conversation_get, conversation_set
from telegram_bridge.key_messages import looks_like_api_key
from telegram_bridge.tests.bot_helpers import press, say

pytestmark = pytest.mark.django_db

USER = 660001
OKX_KEY = "3f1c9a2e-7b4d-4e8a-9c6f-1a2b3c4d5e6f"
BASE64_SECRET = "/Qk9x2mZ+7bP1sT4vW8yA3dF6gH0jK=="  # a secret that starts with "/"
HEX_SECRET = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"


def send(bot_api, text: str) -> tuple[int, list[dict]]:
    """The user's message id and what the bot answered."""
    before = len(bot_api.sent_messages(USER))
    bot_api.inject_message(user_id=USER, text=text)
    message_id = max(k[1] for k in bot_api.messages if k[0] == str(USER))
    assert polling_run(timeout=2, max_updates=1) == 1
    return message_id, bot_api.sent_messages(USER)[before:]


def to_no_conversation(bot_api) -> None:
    conversation_end(telegram_id=USER)


def to_expired_connect(bot_api) -> None:
    say(bot_api, USER, "/connect")
    press(bot_api, USER, "cx:okx")
    conversation_end(telegram_id=USER)  # ten minutes later the cache forgot the conversation


def to_choosing_exchange(bot_api) -> None:
    say(bot_api, USER, "/connect")


def to_setting_input(bot_api) -> None:
    say(bot_api, USER, "/settings")
    press(bot_api, USER, "s:i:leverage")


def to_onboarding_size_input(bot_api) -> None:
    conversation_set(telegram_id=USER, state={"flow": "setting", "field": "position_size_pct", "onboarding": True})


STATES = {
    "none": to_no_conversation,
    "expired_connect": to_expired_connect,
    "choosing_exchange": to_choosing_exchange,
    "setting_input": to_setting_input,
    "onboarding_input": to_onboarding_size_input,
}


@pytest.mark.parametrize("key", [OKX_KEY, BASE64_SECRET, HEX_SECRET])
@pytest.mark.parametrize("state", list(STATES))
def test_a_key_is_deleted_in_every_conversation_state(bot_api, state, key):
    say(bot_api, USER, "/help")  # registered
    STATES[state](bot_api)
    message_id, answers = send(bot_api, key)
    assert not bot_api.message_exists(USER, message_id)
    assert len(answers) == 1 and "so I deleted it" in answers[0]["text"]
    assert key not in str(bot_api.sent_messages())


def test_a_key_during_connect_is_taken_as_the_key_even_when_it_starts_with_a_slash(bot_api):
    say(bot_api, USER, "/connect")
    press(bot_api, USER, "cx:okx")
    message_id, [answer] = send(bot_api, BASE64_SECRET)
    assert not bot_api.message_exists(USER, message_id)
    assert answer["text"].startswith("Received (message deleted).") and "API secret" in answer["text"]
    assert conversation_get(telegram_id=USER)["step"] == "secret"


def send_already_gone(bot_api, text: str) -> str:
    """The user sends ``text`` and deletes it before the bot gets to it: deleteMessage fails. The bot's answer."""
    bot_api.inject_message(user_id=USER, text=text)
    message_id = max(k[1] for k in bot_api.messages if k[0] == str(USER))
    bot_api.messages[(str(USER), message_id)]["deleted"] = True
    assert polling_run(timeout=2, max_updates=1) == 1
    return bot_api.sent_messages(USER)[-1]["text"]


def test_deleted_is_said_only_when_the_deletion_succeeded(bot_api):
    say(bot_api, USER, "/help")
    answer = send_already_gone(bot_api, OKX_KEY)
    assert "could not delete it" in answer and "deleted it" not in answer.replace("could not delete it", "")

    say(bot_api, USER, "/connect")
    press(bot_api, USER, "cx:okx")
    answer = send_already_gone(bot_api, OKX_KEY)
    assert "(message deleted)" not in answer and "could not delete your message" in answer


@pytest.mark.parametrize(
    "text",
    [
        "/toggle_paper_mode",
        "/status@perps_local_bot",
        "1000PEPE/USDT:USDT",
        "25",
        "2.5%",
        "hello there, how are you?",
        "doge, pepe",
        "https://t.me/perps_local_bot",
    ],
)
def test_ordinary_messages_do_not_look_like_keys(text):
    assert not looks_like_api_key(text, command_names={"toggle_paper_mode", "status"})


@pytest.mark.parametrize("text", [OKX_KEY, BASE64_SECRET, HEX_SECRET, "mx0vglBqh6abCdEf12", "AKlive-4f9c2d7e1b8a6c3d"])
def test_exchange_keys_look_like_keys(text):
    assert looks_like_api_key(text, command_names={"status"})
