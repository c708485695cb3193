"""Webhook mode: the secret header is checked before anything else; run_bridge --webhook registers it."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import TelegramUser
from telegram_bridge.models import TelegramUpdate

SECRET = "s3cret-Token_1"


def _update(update_id=1, user_id=601, text="/help"):
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "W"},
            "text": text,
        },
    }


def _post(client, body, **headers):
    return client.post(
        reverse("telegram_bridge:webhook"),
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
def test_a_missing_or_wrong_secret_is_refused_with_401_without_touching_the_database(
    client, settings, django_assert_num_queries, header
):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    headers = {} if header is None else {"X-Telegram-Bot-Api-Secret-Token": header}
    with django_assert_num_queries(0):
        response = _post(client, _update(), **headers)
    assert response.status_code == 401
    assert not TelegramUpdate.objects.exists() and not TelegramUser.objects.exists()


@pytest.mark.django_db
def test_without_a_configured_secret_every_post_is_refused(client, settings, django_assert_num_queries):
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    with django_assert_num_queries(0):
        assert _post(client, _update(), **{"X-Telegram-Bot-Api-Secret-Token": ""}).status_code == 401


@pytest.mark.django_db
def test_only_post_and_malformed_bodies_are_refused_cleanly(client, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    assert client.get(reverse("telegram_bridge:webhook")).status_code == 405
    assert _post(client, "{not json", **{"X-Telegram-Bot-Api-Secret-Token": SECRET}).status_code == 400
    for junk in ([], "string", {"update_id": "x"}, {"update_id": 5, "message": "nope"}, None):
        assert _post(client, json.dumps(junk), **{"X-Telegram-Bot-Api-Secret-Token": SECRET}).status_code == 200
    assert not TelegramUser.objects.exists()


@pytest.mark.django_db
def test_a_valid_update_is_handled_and_answered(client, settings, bot_api, django_capture_on_commit_callbacks):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery: the queued processing runs in-process
        response = _post(client, _update(update_id=77), **{"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert response.status_code == 200 and response.json() == {"ok": True}
    [reply] = bot_api.sent_messages(601)
    assert "Help centre" in reply["text"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert _post(client, _update(update_id=77), **{"X-Telegram-Bot-Api-Secret-Token": SECRET}).status_code == 200
    assert callbacks == []  # Telegram's retry of the same update queues nothing
    assert len(bot_api.sent_messages(601)) == 1
    row = TelegramUpdate.objects.get(update_id=77)
    assert row.processed_at is not None and row.attempts == 1 and row.payload == ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_bridge_webhook_registers_and_the_server_pushes_updates_over_http(live_server, settings, bot_api):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    url = f"{live_server.url}/telegram/webhook"
    call_command("run_bridge", webhook=url)
    assert bot_api.webhook == {
        "url": url,
        "secret_token": SECRET,
        "allowed_updates": ["message", "channel_post", "callback_query", "my_chat_member"],
    }
    assert {c["command"] for c in bot_api.commands} >= {"start", "help", "dashboard", "pnl", "settings"}
    bot_api.inject_message(user_id=602, text="/start", first_name="Hook")
    import time

    deadline = time.monotonic() + 10
    while len(bot_api.sent_messages(602)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    welcome, first_step = bot_api.sent_messages(602)  # the welcome, then the first step of the setup walk
    assert "Welcome, <b>Hook</b>" in welcome["text"] and "1/4" in first_step["text"]
    assert TelegramUser.objects.filter(telegram_id=602).exists()


def test_run_bridge_webhook_needs_a_secret(settings, bot_api):
    from django.core.management.base import CommandError

    settings.TELEGRAM_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="TELEGRAM_WEBHOOK_SECRET"):
        call_command("run_bridge", webhook="https://example.invalid/telegram/webhook")
    assert bot_api.webhook["url"] == ""
