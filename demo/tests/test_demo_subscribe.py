"""The demo's subscription step: through the bot on the local stand-ins, a user pays and live trading unlocks."""

import pytest

from accounts.models import Payment
from demo.offline import demo_bot_api
from demo.subscribe import demo_subscribe_through_bot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_demo_user_subscribes_through_the_bot_and_a_locked_feature_unlocks(settings):
    settings.TELEGRAM_API_BASE = ""
    settings.TELEGRAM_BOT_TOKEN = ""
    with demo_bot_api() as bot_api:
        report = demo_subscribe_through_bot(bot_api, telegram_id=990101, name="carol")
        transcript = bot_api.transcript(990101)
    assert report.webhook_status == 200 and report.payment.status == Payment.Status.PAID
    assert report.locked_before and report.unlocked_after
    text = "\n".join(transcript)
    assert "Live auto-trading on your exchange is part of a paid plan" in text
    assert "sendPhoto" in text and "solana:" in text
    assert "Payment received" in text and "Pro is active until" in text
    assert "Live trading needs a connected exchange: connect one with /connect" in transcript[-1]
