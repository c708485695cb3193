"""The one Django entry point for Telegram updates, and the bridge's writes.

``update_handle(update)`` takes the raw Bot API update (from long polling or the webhook view), de-duplicates it by
update_id, refuses banned users before anything runs, registers the user, records the activity and dispatches to
the command, callback or conversation handler. Nothing raises out of it: a bad update is logged (without its text)
and dropped.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import TelegramUser
from accounts.services import telegram_user_register
from telegram_bridge import callbacks, commands, texts
from telegram_bridge.conversations import conversation_end, conversation_get
from telegram_bridge.models import TelegramUpdate
from telegram_bridge.update_context import UpdateContext

logger = logging.getLogger(__name__)

BANNED_TEXT = "Sorry, this bot is not available to you. Contact support if you think this is a mistake."
ADMIN_ONLY_TEXT = "Sorry, that command is for administrators only."
MAX_TEXT = 8192
GENERIC_ERROR_TEXT = "Sorry, something went wrong on our side. Please try again later."


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def update_handle(update: Any) -> None:
    """Handle one Telegram update (a dict as the Bot API sends it). Never raises."""
    try:
        _update_handle(update)
    except Exception as error:
        update_id = update.get("update_id") if isinstance(update, dict) else None
        logger.error("update %s failed: %s", update_id, type(error).__name__, exc_info=True)


def update_seen(*, update_id: int, kind: str) -> bool:
    """Record the update; False if it was already handled (Telegram re-delivers after a timeout)."""
    try:
        with transaction.atomic():
            TelegramUpdate.objects.create(update_id=update_id, kind=kind[:32])
    except IntegrityError:
        return True
    return False


def _update_handle(update: Any) -> None:
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        return
    if isinstance(update.get("my_chat_member"), dict):
        _membership_changed(update["my_chat_member"])
        return
    message = update.get("message") if isinstance(update.get("message"), dict) else None
    callback = update.get("callback_query") if isinstance(update.get("callback_query"), dict) else None
    source = message or callback
    if source is None:
        return
    sender = source.get("from")
    if not isinstance(sender, dict) or _int(sender.get("id")) is None or sender.get("is_bot") is True:
        return
    if update_seen(update_id=update["update_id"], kind="message" if message else "callback_query"):
        return

    telegram_id = sender["id"]
    chat = (message or callback.get("message") or {}).get("chat") if isinstance(
        (message or callback.get("message") or {}), dict) else None
    chat_id = _int(chat.get("id")) if isinstance(chat, dict) else None
    chat_id = telegram_id if chat_id is None else chat_id
    bot_message = callback.get("message") if callback and isinstance(callback.get("message"), dict) else {}
    message_id = _int(message.get("message_id")) if message else _int(bot_message.get("message_id"))
    callback_id = _str(callback.get("id"), 128) if callback else None

    existing = TelegramUser.objects.filter(telegram_id=telegram_id).first()
    if existing is not None and existing.is_banned:
        refusal = UpdateContext(update_id=update["update_id"], user=existing, chat_id=str(chat_id),
                                callback_id=callback_id or None)
        if callback_id:
            refusal.answer(BANNED_TEXT)
        elif message and isinstance(message.get("text"), str) and message["text"].startswith("/"):
            refusal.reply(BANNED_TEXT)
        refusal.flush()
        return

    user, created = telegram_user_register(
        telegram_id=telegram_id, username=_str(sender.get("username"), 64), first_name=_str(sender.get("first_name"), 128),
        language=_str(sender.get("language_code"), 8) or "en",
    )
    ctx = UpdateContext(update_id=update["update_id"], user=user, chat_id=str(chat_id), message_id=message_id,
                        callback_id=callback_id or None)
    try:
        if callback is not None:
            data = callback.get("data")
            name = callbacks.callback_handle(ctx, data if isinstance(data, str) and len(data) <= 64 else "")
            _activity(user, "callback", name)
        else:
            _message_handle(ctx, message, created=created)
    except Exception as error:
        # The central error handler logs the trace with a reference (and alerts admins when it repeats); the user
        # gets a short apology carrying that reference instead of what the failed handler had queued.
        ctx.replies.clear()
        ctx.reply(update_error_text(error, update_id=update["update_id"]))
    finally:
        ctx.answer()
        ctx.flush()


def update_error_text(error: BaseException, *, update_id: int | None) -> str:
    try:
        from config.observability import bot_update_error
    except ImportError:  # pragma: no cover - the foundation always ships it
        logger.error("update %s failed: %s", update_id, type(error).__name__, exc_info=True)
        return GENERIC_ERROR_TEXT
    return bot_update_error(error, update_id=update_id)


def _membership_changed(change: dict) -> None:
    """The user blocked the bot (private chat, new status "kicked"): stop sending before a 403 says so."""
    chat, new = change.get("chat"), change.get("new_chat_member")
    if not isinstance(chat, dict) or chat.get("type") != "private" or not isinstance(new, dict):
        return
    telegram_id = _int(chat.get("id"))
    if telegram_id is not None and new.get("status") == "kicked":
        users = TelegramUser.objects.filter(telegram_id=telegram_id).values_list("id", flat=True)
        telegram_users_mark_blocked(user_ids=users)


def _message_handle(ctx: UpdateContext, message: dict, *, created: bool) -> None:
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return
    text = text[:MAX_TEXT]
    if not text.startswith("/"):
        state = conversation_get(telegram_id=ctx.user.telegram_id)
        if state:
            _activity(ctx.user, "command", callbacks.conversation_handle(ctx, state, text))
        else:
            ctx.reply("Send /dashboard to get started, or /help for every command.")
        return
    head, _, args = text.partition(" ")
    name = head[1:].split("@", 1)[0].lower()
    conversation_end(telegram_id=ctx.user.telegram_id)  # any command ends a pending input
    handler = commands.COMMAND_HANDLERS.get(name)
    admin_handler = commands.ADMIN_HANDLERS.get(name)
    if admin_handler is not None and not ctx.is_admin:
        ctx.reply(ADMIN_ONLY_TEXT)  # refused: nothing runs, nothing is recorded
        return
    _activity(ctx.user, "command", name if (handler or admin_handler) else "unknown")
    if handler is commands.start:
        commands.start(ctx, args, created=created)
    elif handler or admin_handler:
        (handler or admin_handler)(ctx, args.strip())
    else:
        ctx.reply(texts.unknown_command(head, is_admin=ctx.is_admin))


def _activity(user: TelegramUser, kind: str, name: str) -> None:
    from analytics.services import activity_record

    activity_record(user=user, kind=kind, name=name[:64])


# --- writes on Telegram users that only the bridge makes (candidates for accounts.services) -----------------------

def telegram_users_mark_blocked(*, user_ids) -> int:
    """The user blocked the bot (403): stop sending to them until they talk to the bot again (/start)."""
    return TelegramUser.objects.filter(id__in=list(user_ids), is_active=True).update(is_active=False)


def telegram_user_ban_set(*, telegram_id: int, banned: bool) -> TelegramUser | None:
    user = TelegramUser.objects.filter(telegram_id=telegram_id).first()
    if user is None:
        return None
    if user.is_banned != banned:
        user.is_banned = banned
        user.save(update_fields=["is_banned"])
    return user


def telegram_updates_prune(*, older_than_days: int = 7) -> int:
    """Forget handled update ids after a week (Telegram keeps undelivered updates for 24 hours)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return TelegramUpdate.objects.filter(received_at__lt=cutoff).delete()[0]
