"""The sender over HTTP: idempotency per (chat, key), splitting, 429/403/5xx handling, crash recovery."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from accounts.tests.factories import TelegramUserFactory
from telegram_bridge import deliveries as deliveries_module
from telegram_bridge import sender as sender_module
from telegram_bridge.deliveries import CLAIM_LEASE, OutgoingMessage, deliveries_create, deliveries_due
from telegram_bridge.models import Delivery
from telegram_bridge.rate_limit import Rate, SendRateLimiter
from telegram_bridge.sender import deliveries_send
from telegram_bridge.telegram_html import escape, telegram_html_errors
from telegram_bridge.transport import get_transport

pytestmark = pytest.mark.django_db


def _messages(chats, key="k1", text="<b>hello</b>"):
    return [OutgoingMessage(chat_id=str(c), text=text, dedupe_key=key) for c in chats]


def test_same_chat_and_key_is_sent_once(bot_api):
    ids = deliveries_create(messages=_messages([1, 2, 3]))
    report = deliveries_send(delivery_ids=ids)
    again = deliveries_create(messages=_messages([1, 2, 3]))  # the publisher announced again
    assert again == [] and deliveries_send(delivery_ids=ids).sent == 0
    assert report.sent == 3 and len(bot_api.sent_messages()) == 3
    assert Delivery.objects.filter(status="sent", message_id__isnull=False).count() == 3


def test_long_text_is_split_into_valid_parts_sent_in_order(bot_api):
    text = "<b>Report</b>\n" + "\n".join(escape(f"line {i} <&> ") * 8 for i in range(200))
    ids = deliveries_create(messages=[OutgoingMessage(chat_id="5", text=text, dedupe_key="long")])
    assert len(ids) > 2
    assert deliveries_send(delivery_ids=ids).sent == len(ids)
    sent = bot_api.sent_messages(5)
    assert [m["message_id"] for m in sent] == sorted(m["message_id"] for m in sent)
    assert all(len(m["text"]) <= 4096 and telegram_html_errors(m["text"]) is None for m in sent)
    assert sent[0]["text"].startswith("<b>Report</b>")


def test_invalid_html_from_a_caller_is_sent_escaped_not_dropped(bot_api):
    ids = deliveries_create(messages=[OutgoingMessage(chat_id="5", text="<script>x</script>", dedupe_key="bad")])
    assert deliveries_send(delivery_ids=ids).sent == 1
    assert bot_api.sent_messages(5)[0]["text"] == "&lt;script&gt;x&lt;/script&gt;"


def test_429_is_honoured_and_nothing_is_lost(bot_api):
    bot_api.set_rate_limit(10, burst=1)  # the server allows 10/s; our bucket tries 50/s
    get_transport().limiter = SendRateLimiter(redis_url="", global_rate=Rate(50, 1), chat_rate=Rate(100, 1))
    ids = deliveries_create(messages=_messages(range(1, 16)))
    report = deliveries_send(delivery_ids=ids)
    assert report.sent == 15 and report.retry_afters > 0
    assert bot_api.stats["rate_limited"] > 0 and bot_api.stats["violations"] == 0
    assert sorted(int(m["chat_id"]) for m in bot_api.sent_messages()) == list(range(1, 16))


def test_403_marks_the_user_inactive_and_is_not_retried(bot_api):
    blocked, fine = TelegramUserFactory(), TelegramUserFactory()
    bot_api.block_chat(blocked.telegram_id)
    ids = deliveries_create(
        messages=[
            OutgoingMessage(chat_id=str(u.telegram_id), text="hi", dedupe_key="k", user_id=u.pk)
            for u in (blocked, fine)
        ]
    )
    report = deliveries_send(delivery_ids=ids)
    assert report.blocked == 1 and report.sent == 1
    blocked.refresh_from_db()
    fine.refresh_from_db()
    assert blocked.is_active is False and fine.is_active is True
    assert bot_api.stats["forbidden"] == 1
    assert deliveries_send(delivery_ids=ids).sent == 0 and bot_api.stats["forbidden"] == 1


def test_transient_errors_are_retried_with_backoff(bot_api):
    bot_api.fail_next(2, status=502)
    ids = deliveries_create(messages=_messages([8]))
    assert deliveries_send(delivery_ids=ids).sent == 1
    assert bot_api.stats["server_errors"] == 2 and len(bot_api.sent_messages(8)) == 1


def test_rows_of_a_dead_worker_are_taken_over_but_live_claims_are_not(bot_api):
    ids = deliveries_create(messages=_messages([1, 2, 3]))
    # Worker A claimed 1 and 2 and died ten minutes ago; worker B holds 3 right now.
    Delivery.objects.filter(id__in=ids[:2]).update(status="sending", claimed_at=timezone.now() - timedelta(minutes=10))
    Delivery.objects.filter(id=ids[2]).update(status="sending", claimed_at=timezone.now())
    report = deliveries_send(delivery_ids=ids)  # the redelivered task (acks_late)
    assert report.sent == 2 and report.busy == 1
    assert sorted(m["chat_id"] for m in bot_api.sent_messages()) == ["1", "2"]


def test_the_send_task_backs_off_exponentially_with_jitter_then_leaves_it_to_the_sweeper(monkeypatch):
    from config.celery import app
    from telegram_bridge import tasks
    from telegram_bridge.deliveries import SendReport

    class Retried(Exception):
        pass

    countdowns = []

    def retry(*, kwargs, countdown):
        assert kwargs == {"delivery_ids": [1, 2, 3]}
        countdowns.append(countdown)
        raise Retried

    monkeypatch.setattr(
        "telegram_bridge.sender.deliveries_send", lambda *, delivery_ids: SendReport(sent=1, retry_later=2)
    )
    monkeypatch.setattr(tasks.deliveries_send, "retry", retry)
    previous, app.conf.task_always_eager = app.conf.task_always_eager, False  # as on a real worker
    try:
        for attempt in range(8):
            with pytest.raises(Retried):
                tasks.deliveries_send.apply(kwargs={"delivery_ids": [1, 2, 3]}, retries=attempt)
            base = min(15 * 2**attempt, 400)
            assert 0.5 * base <= countdowns[-1] <= 1.5 * base
            assert countdowns[-1] <= 600 < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
        final = tasks.deliveries_send.apply(kwargs={"delivery_ids": [1, 2, 3]}, retries=8).get()
    finally:
        app.conf.task_always_eager = previous
    assert final["retry_later"] == 2 and len(countdowns) == 8  # the sweeper takes over from here


def test_the_sweeper_picks_rows_past_their_due_time_and_backs_off(bot_api):
    ids = deliveries_create(messages=_messages([1, 2, 3, 4]))
    assert deliveries_due() == []  # just queued: their task may still be on its way
    now = timezone.now()
    Delivery.objects.filter(id=ids[0]).update(created_at=now - timedelta(seconds=30), due_at=now - timedelta(seconds=1))
    Delivery.objects.filter(id=ids[1]).update(status="sending", claimed_at=now - CLAIM_LEASE - timedelta(seconds=1))
    Delivery.objects.filter(id=ids[2]).update(status="sending", claimed_at=now - timedelta(seconds=30))  # alive
    Delivery.objects.filter(id=ids[3]).update(due_at=None, created_at=now - timedelta(minutes=5))  # older rows
    assert deliveries_due() == [ids[0], ids[1], ids[3]]
    next_due = Delivery.objects.get(id=ids[0]).due_at - timezone.now()
    assert timedelta(seconds=25) < next_due <= timedelta(seconds=30)  # as long again as it waited
    assert Delivery.objects.get(id=ids[3]).due_at - timezone.now() <= timedelta(seconds=60)  # capped
    assert deliveries_due() == [ids[1]]  # the pending ones are not picked again on the next sweep


def test_a_live_sender_renews_its_claim_so_nobody_takes_its_rows_over(bot_api, monkeypatch):
    ids = deliveries_create(messages=_messages([1, 2]))
    monkeypatch.setattr(sender_module, "CLAIM_RENEW_SECONDS", 0.0)
    renewed: list[set[int]] = []
    real_renew = deliveries_module.deliveries_claim_renew

    def renew(*, delivery_ids):
        renewed.append(set(delivery_ids))
        Delivery.objects.filter(id__in=list(delivery_ids)).update(claimed_at=timezone.now() - timedelta(hours=1))
        return real_renew(delivery_ids=delivery_ids)

    monkeypatch.setattr(sender_module, "deliveries_claim_renew", renew)
    bot_api.fail_next(2)  # the sends take a few attempts: the claim is renewed meanwhile
    assert deliveries_send(delivery_ids=ids).sent == 2
    assert renewed and all(batch <= set(ids) for batch in renewed)
    assert len(bot_api.sent_messages()) == 2


def test_outcomes_of_sent_messages_wait_for_the_database_instead_of_being_lost(bot_api, monkeypatch):
    """PostgreSQL is down when the sent messages are recorded: the sender waits for it, so the rows do not stay
    claimed and get sent a second time once the claim runs out."""
    ids = deliveries_create(messages=_messages([1, 2, 3]))
    failures = {"left": 3}
    real_record = sender_module.deliveries_record

    def record(batch, rows_by_id, report):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("connection to server failed: database does not allow connections")
        return real_record(batch, rows_by_id, report)

    monkeypatch.setattr(sender_module, "deliveries_record", record)
    monkeypatch.setattr(sender_module.time, "sleep", lambda seconds: None)
    # the outage is simulated above: the test's own connection (inside its transaction) must stay open
    monkeypatch.setattr(sender_module, "_drop_broken_connections", lambda: None)
    assert deliveries_send(delivery_ids=ids).sent == 3
    assert failures["left"] == 0 and set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert deliveries_due() == [] and len(bot_api.sent_messages()) == 3
