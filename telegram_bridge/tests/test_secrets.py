"""The bot token is in every Bot API URL: it must never reach a log line, a stored error or a message."""

import logging

import pytest

from telegram_bridge.bridge import polling_run
from telegram_bridge.deliveries import OutgoingMessage, deliveries_create
from telegram_bridge.models import Delivery
from telegram_bridge.sender import deliveries_send
from telegram_bridge.transport import get_transport, transport_reset

pytestmark = pytest.mark.django_db
TOKEN = "987654321:AAH-very-secret-token_XYZ"


def test_the_token_never_appears_in_logs_or_stored_errors(bot_api, settings, caplog, monkeypatch):
    from telegram_bridge import sender

    monkeypatch.setattr(sender, "MAX_TRANSIENT_ATTEMPTS", 2)
    caplog.set_level(logging.DEBUG)
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    transport_reset()
    bot_api.inject_message(user_id=1201, text="/help")
    assert polling_run(timeout=1, max_updates=1) == 1
    bot_api.fail_next(2, status=502)
    deliveries_send(
        delivery_ids=deliveries_create(messages=[OutgoingMessage(chat_id="1201", text="x", dedupe_key="t")])
    )

    # Now the server is unreachable: connection errors carry the URL in aiohttp's messages.
    settings.TELEGRAM_API_BASE = "http://127.0.0.1:9"
    transport_reset()
    get_transport()
    deliveries_send(
        delivery_ids=deliveries_create(messages=[OutgoingMessage(chat_id="1202", text="y", dedupe_key="t")])
    )
    stored = " ".join(Delivery.objects.values_list("error", flat=True))
    failed = Delivery.objects.get(chat_id="1202")
    assert failed.status == "pending" and "127.0.0.1:9" in failed.error  # the aiohttp error was stored
    sent = str(bot_api.sent_messages())
    for haystack in (caplog.text, stored, sent):
        assert TOKEN not in haystack and "very-secret" not in haystack
