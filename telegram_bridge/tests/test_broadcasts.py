"""Signals, outcomes, position updates and notices reach exactly the right chats, exactly once, over HTTP."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.tests.factories import TelegramUserFactory
from config.celery import app as celery_app
from config.events import dispatch_now
from signals.tests.factories import SignalFactory, SymbolFactory
from telegram_bridge import tasks
from telegram_bridge.broadcasts import signal_broadcast_prepare
from telegram_bridge.models import Delivery
from telegram_bridge.sender import deliveries_send, deliveries_send_pending
from telegram_bridge.telegram_html import telegram_html_errors
from trading.tests.factories import PositionFactory

pytestmark = pytest.mark.django_db


def _user(telegram_id, **preferences):
    user = TelegramUserFactory(telegram_id=telegram_id)
    for name, value in preferences.items():
        setattr(user.preferences, name, value)
    user.preferences.save()
    return user


@pytest.fixture
def audience():
    """One subscriber who accepts the DOGE medium-risk signal, and one for each reason to be left out."""
    return {
        "accepts": _user(801),
        "accepts_medium_only": _user(802, accepted_risk_levels=["medium"]),
        "muted_by_base": _user(803, muted_symbols=["DOGE"]),
        "muted_by_symbol": _user(804, muted_symbols=["DOGE/USDT:USDT", "PEPE/USDT:USDT"]),
        "dm_alerts_off": _user(805, dm_alerts=False),
        "low_risk_only": _user(806, accepted_risk_levels=["low"]),
        "inactive": TelegramUserFactory(telegram_id=807, is_active=False),
        "banned": TelegramUserFactory(telegram_id=808, is_banned=True),
    }


def test_the_telegram_consumers_of_the_domain_events_are_declared(settings):
    for event, name in [
        ("signal.created", "telegram_bridge.tasks.broadcast_signal"),
        ("signal.closed", "telegram_bridge.tasks.announce_signal_outcome"),
        ("position.opened", "telegram_bridge.tasks.notify_position"),
        ("position.closed", "telegram_bridge.tasks.notify_position"),
        ("user.notify", "telegram_bridge.tasks.notify_user"),
    ]:
        assert name in settings.DOMAIN_EVENT_CONSUMERS[event]
        assert name in celery_app.tasks
    assert settings.CELERY_TASK_ROUTES["telegram_bridge.tasks.*"] == {"queue": "telegram"}
    assert tasks.broadcast_signal.acks_late and tasks.deliveries_send.reject_on_worker_lost


def test_signal_created_reaches_only_subscribers_whose_preferences_accept_it_and_the_channel(
    bot_api, settings, audience
):
    settings.TELEGRAM_CHANNEL_ID = "@perps_signals"
    settings.DOMAIN_EVENT_CONSUMERS = {"signal.created": ["telegram_bridge.tasks.broadcast_signal"]}
    signal = SignalFactory(
        symbol=SymbolFactory(symbol="DOGE/USDT:USDT"),
        side="short",
        risk_level="medium",
        entry=Decimal("0.1500"),
        stop=Decimal("0.1530"),
        tp1=Decimal("0.1470"),
        tp2=Decimal("0.1440"),
        confirmations=["trend", "volume", "momentum"],
    )
    dispatch_now("signal.created", {"signal_id": signal.pk})  # exactly what signals' publish() sends

    chats = sorted(m["chat_id"] for m in bot_api.sent_messages())
    assert chats == ["801", "802", "@perps_signals"]
    card = bot_api.sent_messages(801)[0]["text"]
    for part in (
        "SHORT DOGE/USDT:USDT",
        "Entry: <code>0.15</code>",
        "Stop: <code>0.153</code>",
        "TP1: <code>0.147</code>",
        "TP2: <code>0.144</code>",
        "Leverage hint: 5x",
        "Risk level: <b>medium</b>",
        "trend, volume, momentum (3 passed)",
        "UTC",
    ):
        assert part in card, (part, card)
    assert telegram_html_errors(card) is None

    dispatch_now("signal.created", {"signal_id": signal.pk})  # the publisher announced again after a crash
    tasks.broadcast_signal.delay(signal_id=signal.pk)
    assert len(bot_api.sent_messages()) == 3
    assert Delivery.objects.filter(dedupe_key=f"signal:{signal.pk}", status="sent").count() == 3


def test_user_text_in_a_news_signal_is_escaped(bot_api):
    _user(811)
    signal = SignalFactory(
        source="news", headline='<script>alert("x")</script> & <b>pump</b>', url='https://example.com/a?b=1&c="2"'
    )
    tasks.broadcast_signal.delay(signal_id=signal.pk)
    [card] = bot_api.sent_messages(811)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;pump&lt;/b&gt;" in card["text"]
    assert 'href="https://example.com/a?b=1&amp;c=&quot;2&quot;"' in card["text"]
    assert "<script>" not in card["text"]


def test_news_and_flow_preferences_are_respected(bot_api):
    _user(821, news_signals=False)
    _user(822, flow_signals=False)
    tasks.broadcast_signal.delay(signal_id=SignalFactory(source="news", headline="h").pk)
    tasks.broadcast_signal.delay(signal_id=SignalFactory(source="flow").pk)
    assert [m["chat_id"] for m in bot_api.sent_messages()] == ["822", "821"]


def test_the_outcome_replies_to_each_delivered_card_once(bot_api, settings):
    settings.TELEGRAM_CHANNEL_ID = "-1001234"
    users = [_user(831), _user(832)]
    signal = SignalFactory()
    tasks.broadcast_signal.delay(signal_id=signal.pk)
    cards = {m["chat_id"]: m["message_id"] for m in bot_api.sent_messages()}
    tasks.announce_signal_outcome.delay(signal_id=signal.pk)  # still open: nothing to say
    assert len(bot_api.sent_messages()) == 3

    signal.status, signal.outcome, signal.outcome_pnl_pct = "closed", "tp2", Decimal("4.0")
    signal.closed_at = timezone.now()
    signal.save()
    tasks.announce_signal_outcome.delay(signal_id=signal.pk)
    tasks.announce_signal_outcome.delay(signal_id=signal.pk)  # announced twice: sent once
    outcomes = bot_api.sent_messages()[3:]
    assert len(outcomes) == 3
    assert {m["chat_id"]: m["reply_to_message_id"] for m in outcomes} == cards
    assert all("TP2 hit" in m["text"] and "+4.00%" in m["text"] for m in outcomes)
    assert {str(u.telegram_id) for u in users} < set(cards)


def test_position_updates_reply_to_the_signal_and_repeat_only_on_a_real_change(bot_api):
    user = _user(841)
    position = PositionFactory(user=user)
    tasks.broadcast_signal.delay(signal_id=position.signal_id)
    [card] = bot_api.sent_messages(841)
    tasks.notify_position.delay(position_id=position.pk)
    tasks.notify_position.delay(position_id=position.pk)  # position.updated announced twice, no change
    [opened] = bot_api.sent_messages(841)[1:]
    assert "Position opened" in opened["text"] and opened["reply_to_message_id"] == card["message_id"]
    position.status, position.close_reason, position.closed_at = "closed", "tp2", timezone.now()
    position.realised_pnl = Decimal("12.5")
    position.save()
    tasks.notify_position.delay(position_id=position.pk)
    closed = bot_api.sent_messages(841)[-1]
    assert "Position closed" in closed["text"] and "Net PnL" in closed["text"]
    assert len(bot_api.sent_messages(841)) == 3


def test_user_notify_is_a_no_op_on_repeat_and_skips_inactive_users(bot_api):
    user, gone = _user(851), TelegramUserFactory(telegram_id=852, is_active=False)
    for _ in range(3):
        tasks.notify_user.delay(user_id=user.pk, text="⚠️ Funding on <b>BTC</b> is 0.1%", dedupe_key="funding:BTC:1")
    tasks.notify_user.delay(user_id=gone.pk, text="x", dedupe_key="funding:BTC:1")
    assert [m["text"] for m in bot_api.sent_messages()] == ["⚠️ Funding on <b>BTC</b> is 0.1%"]


def test_nothing_is_lost_or_repeated_when_a_worker_dies_mid_broadcast(bot_api):
    users = [_user(900 + i) for i in range(30)]
    signal = SignalFactory()
    ids = signal_broadcast_prepare(signal_id=signal.pk)  # rows stored; the fan-out tasks were queued
    assert len(ids) == 30
    deliveries_send(delivery_ids=ids[:10])  # worker A finished its first chunk …
    # … worker B claimed the second chunk and was killed (kill -9) before recording anything.
    Delivery.objects.filter(id__in=ids[10:20]).update(
        status="sending", claimed_at=timezone.now() - timedelta(minutes=6)
    )
    # The third chunk's task never ran (the broker lost it; acks_late would normally redeliver it).
    Delivery.objects.filter(id__in=ids[20:]).update(
        created_at=timezone.now() - timedelta(minutes=3), due_at=timezone.now() - timedelta(minutes=2)
    )
    assert tasks.broadcast_signal.delay(signal_id=signal.pk).get() == 1  # re-announced: only unsent rows fan out

    assert sorted(int(m["chat_id"]) for m in bot_api.sent_messages()) == sorted(u.telegram_id for u in users)
    assert deliveries_send_pending().sent == 0
    assert tasks.deliveries_resend_stale.delay().get() == 0
    assert Delivery.objects.filter(status="sent").count() == 30


def test_the_sweeper_and_send_pending_deliver_what_was_left_behind(bot_api):
    users = [_user(950 + i) for i in range(5)]
    ids = signal_broadcast_prepare(signal_id=SignalFactory().pk)
    Delivery.objects.filter(id__in=ids[:2]).update(
        created_at=timezone.now() - timedelta(minutes=3), due_at=timezone.now() - timedelta(minutes=2)
    )
    assert tasks.deliveries_resend_stale.delay().get() == 1
    assert len(bot_api.sent_messages()) == 2
    report = deliveries_send_pending()
    assert report.sent == 3 and len(bot_api.sent_messages()) == 5
    assert {m["chat_id"] for m in bot_api.sent_messages()} == {str(u.telegram_id) for u in users}
