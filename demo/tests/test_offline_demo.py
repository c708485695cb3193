"""The calls the offline demo makes: users talk to the bot, a signal reaches them, the transcript shows it."""

import pytest
from django.db import transaction

from demo.offline import demo_bot_api, demo_deliveries_flush, demo_subscribers_start
from signals.tests.factories import SignalFactory, SymbolFactory
from telegram_bridge.models import Delivery

pytestmark = pytest.mark.django_db


def test_demo_users_receive_a_signal_through_aiogram_over_http(settings, django_capture_on_commit_callbacks):
    settings.TELEGRAM_API_BASE = ""
    settings.TELEGRAM_BOT_TOKEN = ""
    settings.DOMAIN_EVENT_CONSUMERS = {"signal.created": ["telegram_bridge.tasks.broadcast_signal"]}
    with demo_bot_api() as bot_api:
        assert bot_api is not None and bot_api.base_url == settings.TELEGRAM_API_BASE
        users = demo_subscribers_start(
            bot_api, users=[(990001, "alice"), (990002, "bob")], commands={990002: ["/mute DOGE"]}
        )
        assert sorted(u.username for u in users) == ["alice", "bob"]
        from config.events import publish

        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            doge = SignalFactory(symbol=SymbolFactory(symbol="DOGE/USDT:USDT"))
            btc = SignalFactory(symbol=SymbolFactory(symbol="BTC/USDT:USDT"), side="short")
            publish("signal.created", signal_id=doge.pk)
            publish("signal.created", signal_id=btc.pk)
        Delivery.objects.create(chat_id="990001", dedupe_key="left-behind", text="<b>still pending</b>")
        report = demo_deliveries_flush()
        assert report.sent == 1 and report.retry_later == 0
        transcript = "\n".join(bot_api.transcript())
        alice, bob = bot_api.transcript(990001), bot_api.transcript(990002)
    assert settings.TELEGRAM_API_BASE == ""  # restored
    assert "Welcome, Alice!" in alice[0] and "1/4 · Paper or live?" in alice[1]  # the setup walk begins
    assert "Muted DOGE/USDT:USDT" in bob[2]
    assert any("LONG DOGE/USDT:USDT" in line for line in alice) and not any("LONG DOGE" in line for line in bob)
    assert any("SHORT BTC/USDT:USDT" in line for line in bob)
    assert "still pending" in transcript and "<b>" not in transcript  # rendered as the user sees it


def test_with_a_real_token_the_demo_uses_telegram(settings):
    settings.TELEGRAM_API_BASE = ""
    settings.TELEGRAM_BOT_TOKEN = "123:real-looking"
    with demo_bot_api() as bot_api:
        assert bot_api is None
