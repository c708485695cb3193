"""Who gets what: recipients of signals, outcomes, position updates and notices, stored as Delivery rows.

Each ``*_prepare`` function is idempotent (Delivery is unique per chat and dedupe key) and returns the ids of the
deliveries still to send, which the tasks fan out in chunks.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import TelegramChat, TelegramUser
from accounts.policy import TELEGRAM, SignalFacts, signal_reaches_chat, signal_reaches_user
from signals.models import Signal
from signals.services import signal_fanout_record
from telegram_bridge import texts
from telegram_bridge.deliveries import OutgoingMessage, deliveries_create, deliveries_due
from telegram_bridge.models import Delivery
from trading.models import Position

BROADCAST_CONSUMER = "telegram_bridge.tasks.broadcast_signal"


def signal_dedupe_key(signal_id: int) -> str:
    return f"signal:{signal_id}"


def signal_recipients(signal) -> list[tuple[int, int]]:
    """(user id, telegram id) of the users the card reaches: ``accounts.policy.signal_reaches_user`` decides (not
    banned, not blocked, DM alerts on, source, risk level and muted symbols accepted); the query only narrows."""
    users = (
        TelegramUser.objects.filter(is_active=True, is_banned=False, preferences__dm_alerts=True)
        .select_related("preferences")
        .only(
            "id",
            "telegram_id",
            "is_active",
            "is_banned",
            "preferences__dm_alerts",
            "preferences__accepted_risk_levels",
            "preferences__muted_symbols",
            "preferences__news_signals",
            "preferences__flow_signals",
        )
    )
    facts = SignalFacts.of(signal)
    return [
        (user.pk, user.telegram_id)
        for user in users.iterator(chunk_size=2000)
        if signal_reaches_user(user=user, signal=facts, channel=TELEGRAM)
    ]


def signal_chats(signal) -> list[str]:
    """Chat ids of the registered groups and channels whose filters (set by their admins) admit the card, plus the
    configured ``TELEGRAM_CHANNEL_ID``. Each gets its own Delivery row, sent within Telegram's per-group limit."""
    facts = SignalFacts.of(signal)
    chats = [
        str(chat.chat_id)
        for chat in TelegramChat.objects.filter(is_active=True).order_by("pk")
        if signal_reaches_chat(chat=chat, signal=facts)
    ]
    if settings.TELEGRAM_CHANNEL_ID and str(settings.TELEGRAM_CHANNEL_ID) not in chats:
        chats.append(str(settings.TELEGRAM_CHANNEL_ID))
    return chats


def _signal(signal_id: int):
    return Signal.objects.select_related("symbol").filter(id=signal_id).first()


def signal_broadcast_prepare(*, signal_id: int) -> list[int]:
    """The broadcast's fan-out: one delivery row per recipient (and the channel), stored with the ``SignalFanout``
    record in ONE transaction before any send task is queued; ids of the rows not sent yet. Announced again, it adds
    only recipients who have no row (the admin's "resend") and returns the unsent rows."""
    signal = _signal(signal_id)
    if signal is None:
        return []
    text, key = texts.signal_card(signal), signal_dedupe_key(signal_id)
    messages = [
        OutgoingMessage(chat_id=str(tg_id), text=text, dedupe_key=key, user_id=user_id)
        for user_id, tg_id in signal_recipients(signal)
    ]
    messages += [OutgoingMessage(chat_id=chat_id, text=text, dedupe_key=key) for chat_id in signal_chats(signal)]
    with transaction.atomic():
        ids = deliveries_create(messages=messages)
        signal_fanout_record(signal_id=signal_id, consumer=BROADCAST_CONSUMER)
    return ids


def signal_outcome_prepare(*, signal_id: int) -> list[int]:
    """A reply to each delivered copy of the original signal."""
    signal = _signal(signal_id)
    if signal is None or signal.outcome == "open":
        return []
    text = texts.signal_outcome(signal)
    originals = Delivery.objects.filter(dedupe_key=signal_dedupe_key(signal_id), status=Delivery.Status.SENT)
    originals = originals.exclude(user__is_banned=True).exclude(user__is_active=False)
    gone = TelegramChat.objects.filter(is_active=False).values_list("chat_id", flat=True)
    originals = originals.exclude(user__isnull=True, chat_id__in=[str(chat_id) for chat_id in gone])
    messages = [
        OutgoingMessage(
            chat_id=chat_id,
            text=text,
            dedupe_key=f"{signal_dedupe_key(signal_id)}:outcome",
            user_id=user_id,
            reply_to_message_id=message_id,
        )
        for chat_id, user_id, message_id in originals.values_list("chat_id", "user_id", "message_id").iterator()
    ]
    return deliveries_create(messages=messages)


def position_notification_prepare(*, position_id: int) -> list[int]:
    position = Position.objects.select_related("symbol", "user").filter(id=position_id).first()
    if position is None or not position.user.is_active or position.user.is_banned:
        return []
    # One message per distinct state: a repeated event is a no-op, a real change is a new message.
    fingerprint = (
        f"{position.status}:{int(position.tp1_done)}:{position.stop_price}:{position.remaining_quantity}:"
        f"{position.close_reason}"
    )
    reply_to = None
    if position.signal_id:
        reply_to = (
            Delivery.objects.filter(
                dedupe_key=signal_dedupe_key(position.signal_id),
                chat_id=str(position.user.telegram_id),
                status=Delivery.Status.SENT,
            )
            .values_list("message_id", flat=True)
            .first()
        )
    text = texts.position_update(position)
    message = OutgoingMessage(
        chat_id=str(position.user.telegram_id),
        text=text,
        dedupe_key=f"position:{position_id}:{fingerprint}"[:200],
        user_id=position.user_id,
        reply_to_message_id=reply_to,
    )
    return deliveries_create(messages=[message])


def user_notification_prepare(*, user_id: int, text: str, dedupe_key: str) -> list[int]:
    user = TelegramUser.objects.filter(id=user_id, is_active=True, is_banned=False).first()
    if user is None:
        return []
    return deliveries_create(
        messages=[
            OutgoingMessage(
                chat_id=str(user.telegram_id), text=text, dedupe_key=f"notify:{dedupe_key}"[:200], user_id=user.id
            )
        ]
    )


def stale_delivery_ids() -> list[int]:
    """Rows the sweeper sends again: pending past their due time, or claimed by a worker that died."""
    return deliveries_due()
