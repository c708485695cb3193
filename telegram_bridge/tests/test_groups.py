"""The bot in a supergroup and a channel, driven through the local Bot API server and the polling bridge:
registration on ``my_chat_member``, privacy (personal commands answered privately or refused with a pointer, never a
login link or a key request in the group), the group's own filters set by its admins, cards to every registered
chat, and unregistration on removal or a 403."""

from __future__ import annotations

import re

import pytest

from accounts.models import TelegramChat
from accounts.tests.factories import TelegramUserFactory
from config.events import dispatch_now
from signals.tests.factories import SignalFactory, SymbolFactory
from telegram_bridge.bridge import polling_run
from telegram_bridge.conversations import conversation_get
from telegram_bridge.models import Delivery
from telegram_bridge.rate_limit import is_group_chat
from telegram_bridge.tests.bot_helpers import callback_data, say

pytestmark = pytest.mark.django_db

GROUP = -1001234567890
CHANNEL = -1009876543210
MEMBER, ADMIN, STRANGER = 880001, 880002, 880003
PERSONAL = ("/pnl", "/status", "/positions", "/dashboard", "/connect", "/settings", "/autotrade on")
LOGIN_LINK = re.compile(r"/dashboard/login/link/|login", re.IGNORECASE)


def poll(expected: int = 1) -> None:
    assert polling_run(timeout=2, max_updates=expected) == expected


def in_group(bot_api, user_id: int, text: str, chat_id: int = GROUP) -> list[dict]:
    """Send ``text`` in the group as ``user_id``; what the bot sent to the group in response."""
    before = len(bot_api.sent_messages(chat_id))
    bot_api.inject_message(user_id=user_id, text=text, chat_id=chat_id, chat_type="supergroup")
    poll()
    return bot_api.sent_messages(chat_id)[before:]


@pytest.fixture
def group(bot_api, settings):
    settings.DOMAIN_EVENT_CONSUMERS = {"signal.created": ["telegram_bridge.tasks.broadcast_signal"]}
    settings.WEB_BASE_URL = "https://perps.example"  # the dashboard carries a one-time login link
    TelegramUserFactory(telegram_id=MEMBER, username="mia")  # talked to the bot privately before
    TelegramUserFactory(telegram_id=ADMIN, username="ada")
    bot_api.inject_bot_membership(chat_id=GROUP, status="member", by_user_id=ADMIN)
    poll()
    bot_api.set_chat_admins(GROUP, {ADMIN})
    return TelegramChat.objects.get(chat_id=GROUP)


def test_adding_the_bot_registers_the_group_and_welcomes_it(bot_api, group):
    assert group.is_active and group.kind == "supergroup" and group.title == "Traders"
    assert group.added_by.telegram_id == ADMIN and group.accepted_risk_levels == ["low", "medium"]
    [welcome] = bot_api.sent_messages(GROUP)
    assert "post new signal cards" in welcome["text"] and "/filters" in welcome["text"]
    assert "t.me/perps_local_bot" in welcome["text"]


@pytest.mark.parametrize("command", PERSONAL)
def test_a_personal_command_in_the_group_is_answered_privately(bot_api, group, command):
    private_before = len(bot_api.sent_messages(MEMBER))
    [answer] = in_group(bot_api, MEMBER, command)
    assert answer["text"] == "📬 @mia, I've sent it to you privately."
    private = bot_api.sent_messages(MEMBER)[private_before:]
    assert private, "the answer went to the member's private chat"
    group_text = " ".join(m["text"] + str(m.get("reply_markup") or "") for m in bot_api.sent_messages(GROUP))
    assert not LOGIN_LINK.search(group_text)  # never a login link in the group
    if command == "/dashboard":
        assert any("url" in b for row in private[0]["reply_markup"]["inline_keyboard"] for b in row)
    if command == "/connect":
        assert "cx:okx" in callback_data(private[0])  # the key questions are asked privately
        assert conversation_get(telegram_id=MEMBER)["flow"] == "connect"


@pytest.mark.parametrize("command", PERSONAL)
def test_a_personal_command_from_someone_without_a_private_chat_is_refused_with_a_pointer(bot_api, group, command):
    [answer] = in_group(bot_api, STRANGER, command)
    assert "Open a private chat with me: t.me/perps_local_bot" in answer["text"]
    assert answer["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://t.me/perps_local_bot"
    assert bot_api.sent_messages(STRANGER) == []  # nothing personal sent anywhere
    assert not LOGIN_LINK.search(answer["text"])


def test_group_safe_commands_are_answered_in_the_group(bot_api, group):
    SignalFactory(symbol=SymbolFactory(symbol="SOL/USDT:USDT"))
    [help_] = in_group(bot_api, STRANGER, "/help")
    assert "/filters" in help_["text"] and "private chat only" in help_["text"]
    [signals] = in_group(bot_api, STRANGER, "/signals@perps_local_bot")
    assert "SOL/USDT:USDT" in signals["text"] and not signals.get("reply_markup")
    assert in_group(bot_api, STRANGER, "/pnl@another_bot") == []  # another bot's command: not ours to answer


def test_admins_set_the_groups_filters_and_cards_follow_them(bot_api, group):
    [page] = in_group(bot_api, MEMBER, "/filters")
    assert "Risk levels: low, medium" in page["text"] and "g:r:high" in callback_data(page)
    # a member's tap is refused, an admin's is saved
    bot_api.inject_group_callback(user_id=MEMBER, chat_id=GROUP, data="g:r:high", message_id=page["message_id"])
    poll()
    assert "admins" in bot_api.calls_of("answerCallbackQuery")[-1]["text"]
    assert TelegramChat.objects.get(chat_id=GROUP).accepted_risk_levels == ["low", "medium"]
    bot_api.inject_group_callback(user_id=ADMIN, chat_id=GROUP, data="g:r:high", message_id=page["message_id"])
    bot_api.inject_group_callback(user_id=ADMIN, chat_id=GROUP, data="g:r:low", message_id=page["message_id"])
    poll(2)
    assert TelegramChat.objects.get(chat_id=GROUP).accepted_risk_levels == ["medium", "high"]
    assert "Risk levels: medium, high" in bot_api.sent_messages(GROUP)[-1]["text"]  # the page edited in place

    assert "admins" in in_group(bot_api, MEMBER, "/mute doge")[0]["text"]
    assert in_group(bot_api, ADMIN, "/mute doge")[0]["text"] == "🔇 DOGE muted in this chat."
    assert TelegramChat.objects.get(chat_id=GROUP).muted_symbols == ["DOGE/USDT:USDT"]
    assert "not a symbol" not in in_group(bot_api, ADMIN, "/mute DOGE/USDT")[0]["text"]  # any spelling, one entry

    def card_reaches_group(symbol: str, risk: str) -> bool:
        signal = SignalFactory(symbol=SymbolFactory(symbol=symbol), risk_level=risk)
        dispatch_now("signal.created", {"signal_id": signal.pk})
        return Delivery.objects.filter(chat_id=str(GROUP), dedupe_key=f"signal:{signal.pk}", status="sent").exists()

    assert card_reaches_group("XRP/USDT:USDT", "high")
    assert not card_reaches_group("ADA/USDT:USDT", "low")  # risk level not accepted here
    assert not card_reaches_group("DOGE/USDT:USDT", "medium")  # muted here


def test_cards_reach_every_registered_group_and_channel_within_the_group_rate(bot_api, group):
    bot_api.inject_bot_membership(
        chat_id=CHANNEL, status="administrator", by_user_id=ADMIN, chat_type="channel", title="Signals channel"
    )
    poll()
    assert TelegramChat.objects.get(chat_id=CHANNEL).kind == "channel"
    signal = SignalFactory(symbol=SymbolFactory(symbol="ETH/USDT:USDT"), risk_level="low")
    dispatch_now("signal.created", {"signal_id": signal.pk})
    rows = Delivery.objects.filter(dedupe_key=f"signal:{signal.pk}", user__isnull=True)
    assert sorted(rows.values_list("chat_id", "status")) == sorted([(str(GROUP), "sent"), (str(CHANNEL), "sent")])
    assert all(is_group_chat(chat_id) for chat_id in rows.values_list("chat_id", flat=True))  # 20/min bucket
    dispatch_now("signal.created", {"signal_id": signal.pk})  # announced again: not sent twice
    assert len([m for m in bot_api.sent_messages(CHANNEL) if "ETH/USDT:USDT" in m["text"]]) == 1


def test_removal_or_a_403_unregisters_the_chat(bot_api, group):
    bot_api.inject_bot_membership(chat_id=GROUP, status="left", by_user_id=ADMIN, old_status="member")
    poll()
    removed = TelegramChat.objects.get(chat_id=GROUP)
    assert not removed.is_active and removed.unregistered_reason == "the bot was removed"
    signal = SignalFactory(symbol=SymbolFactory(symbol="ETH/USDT:USDT"), risk_level="low")
    dispatch_now("signal.created", {"signal_id": signal.pk})
    assert not Delivery.objects.filter(chat_id=str(GROUP), dedupe_key=f"signal:{signal.pk}").exists()

    bot_api.inject_bot_membership(chat_id=GROUP, status="member", by_user_id=ADMIN)  # added back: registered again
    poll()
    assert TelegramChat.objects.get(chat_id=GROUP).is_active
    bot_api.block_chat(GROUP)  # then Telegram refuses to deliver there (kicked without us hearing of it)
    signal = SignalFactory(symbol=SymbolFactory(symbol="BNB/USDT:USDT"), risk_level="low")
    dispatch_now("signal.created", {"signal_id": signal.pk})
    assert Delivery.objects.get(chat_id=str(GROUP), dedupe_key=f"signal:{signal.pk}").status == "blocked"
    assert not TelegramChat.objects.get(chat_id=GROUP).is_active
    assert TelegramUserFactory._meta.model.objects.get(telegram_id=ADMIN).is_active  # no user blamed for it


def test_a_key_posted_in_the_group_is_deleted_and_said_so(bot_api, group):
    bot_api.inject_message(
        user_id=MEMBER, text="3f1c9a2e-7b4d-4e8a-9c6f-1a2b3c4d5e6f", chat_id=GROUP, chat_type="supergroup"
    )
    key_message = max(k[1] for k in bot_api.messages if k[0] == str(GROUP))
    poll()
    assert not bot_api.message_exists(GROUP, key_message)
    assert "I deleted it" in bot_api.sent_messages(GROUP)[-1]["text"]


def test_in_a_private_chat_nothing_changes(bot_api):
    [answer] = say(bot_api, MEMBER, "/status")
    assert "<b>Status</b>" in answer["text"]
