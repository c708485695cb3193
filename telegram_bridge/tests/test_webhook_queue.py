"""Webhook updates are stored once, answered at once and processed exactly once on the telegram queue; nothing
stored is lost when the enqueue fails or a worker dies (the beat sweeper picks it up)."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import TelegramUser
from telegram_bridge import services, tasks
from telegram_bridge.models import TelegramUpdate

SECRET = "s3cret-Token_2"
pytestmark = pytest.mark.django_db


def _update(update_id, user_id=611, text="/help"):
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Q"},
            "text": text,
        },
    }


def _post(client, body):
    return client.post(
        reverse("telegram_bridge:webhook"),
        data=json.dumps(body),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )


@pytest.fixture
def queued(settings, monkeypatch):
    """The broker as seen by the view: what it queued (nothing runs until the test says so)."""
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    sent: list[dict] = []
    monkeypatch.setattr(tasks.telegram_update_process, "delay", lambda **kwargs: sent.append(kwargs))
    return sent


def test_the_view_stores_the_update_encrypted_queues_it_and_answers_without_handling_it(
    client, queued, bot_api, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    with django_capture_on_commit_callbacks(execute=True), django_assert_max_num_queries(3):
        response = _post(client, _update(1001, text="/help APIKEY-in-a-message-4242"))
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert queued == [{"update_id": 1001}]
    row = TelegramUpdate.objects.get(update_id=1001)
    assert row.kind == "message" and row.processed_at is None and row.attempts == 0
    assert "APIKEY" not in row.payload and row.payload  # encrypted at rest (a /connect answer carries API keys)
    assert not TelegramUser.objects.exists() and bot_api.sent_messages(611) == []  # nothing handled in the request


def test_the_task_handles_a_stored_update_exactly_once(client, queued, bot_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, _update(1002))
        _post(client, _update(1002))  # Telegram re-delivers: stored once, queued once
    assert queued == [{"update_id": 1002}] and TelegramUpdate.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.telegram_update_process.run(update_id=1002) is True
        assert tasks.telegram_update_process.run(update_id=1002) is False  # a repeated task delivery is a no-op
    [reply] = bot_api.sent_messages(611)
    assert "Help centre" in reply["text"]
    row = TelegramUpdate.objects.get(update_id=1002)
    assert row.processed_at is not None and row.attempts == 1 and row.payload == ""


def test_a_failed_enqueue_still_answers_200_and_the_sweeper_processes_the_update_once(
    client, settings, monkeypatch, bot_api, django_capture_on_commit_callbacks
):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET

    def broker_down(**kwargs):
        raise ConnectionError("Error 111 connecting to redis")

    monkeypatch.setattr(tasks.telegram_update_process, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(client, _update(1003)).status_code == 200
    assert TelegramUpdate.objects.get(update_id=1003).processed_at is None
    assert tasks.telegram_updates_process_stale.run() == 0  # still within the grace left to its own task
    TelegramUpdate.objects.filter(update_id=1003).update(received_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.telegram_updates_process_stale.run() == 1
        assert tasks.telegram_updates_process_stale.run() == 0
    assert len(bot_api.sent_messages(611)) == 1
    assert TelegramUpdate.objects.get(update_id=1003).processed_at is not None


def test_an_update_claimed_by_a_worker_that_died_is_processed_after_the_lease(
    client, queued, bot_api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, _update(1004))
    now = timezone.now()
    TelegramUpdate.objects.filter(update_id=1004).update(
        received_at=now - timedelta(minutes=5), claimed_at=now, attempts=1
    )
    assert tasks.telegram_update_process.run(update_id=1004) is False  # another worker holds it
    assert tasks.telegram_updates_process_stale.run() == 0
    TelegramUpdate.objects.filter(update_id=1004).update(
        claimed_at=now - services.UPDATE_CLAIM_LEASE - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.telegram_updates_process_stale.run() == 1
    assert len(bot_api.sent_messages(611)) == 1
    assert TelegramUpdate.objects.get(update_id=1004).attempts == 2


def test_an_update_that_keeps_killing_its_worker_is_dropped_after_the_last_attempt(client, queued, bot_api, caplog):
    _post(client, _update(1005))
    TelegramUpdate.objects.filter(update_id=1005).update(attempts=services.UPDATE_MAX_ATTEMPTS)
    assert services.update_process(update_id=1005) is True
    assert bot_api.sent_messages(611) == [] and "dropped after" in caplog.text
    assert TelegramUpdate.objects.get(update_id=1005).processed_at is not None


def test_junk_is_answered_but_not_stored(client, queued):
    for junk in ([], {"update_id": "7"}, {"update_id": -1, "message": {}}, {"update_id": 2**64}, {"message": {}}):
        assert _post(client, junk).status_code == 200
    assert not TelegramUpdate.objects.exists() and queued == []


def test_prune_keeps_unprocessed_updates():
    old = timezone.now() - timedelta(days=8)
    TelegramUpdate.objects.create(update_id=1, received_at=old, processed_at=old)
    TelegramUpdate.objects.create(update_id=2, received_at=old, payload="x")
    assert services.telegram_updates_prune() == 1
    assert list(TelegramUpdate.objects.values_list("update_id", flat=True)) == [2]
