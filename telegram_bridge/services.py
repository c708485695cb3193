"""The one Django entry point for Telegram updates, and the bridge's writes.

``update_handle(update)`` takes the raw Bot API update (from long polling), de-duplicates it by update_id, refuses
banned users before anything runs, registers the user, records the activity and dispatches to the command, callback
or conversation handler. Nothing raises out of it: a bad update is logged (without its text) and dropped.

The webhook does less in the request: ``telegram_bridge.inbox.update_receive`` stores the raw update once (unique
update_id, payload encrypted at rest) and queues ``telegram_update_process`` after commit; ``update_process`` claims the stored row
(a lease), handles it exactly once and marks it processed. ``updates_process_stale`` (beat) handles rows whose task
was never queued or whose worker died, so an answered update is never lost.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.crypto import SecretDecryptionError, decrypt_secret, rotate_secret
from accounts.models import TelegramUser
from accounts.services import telegram_chat_migrate, telegram_user_register, telegram_users_mark_blocked
from analytics.services import activity_record
from config.observability import bot_update_error
from telegram_bridge import callbacks, commands, groups, onboarding, texts
from telegram_bridge.conversations import conversation_end, conversation_get
from telegram_bridge.key_messages import looks_like_api_key
from telegram_bridge.models import TelegramUpdate
from telegram_bridge.update_context import UpdateContext

logger = logging.getLogger(__name__)

BANNED_TEXT = "Sorry, this bot is not available to you. Contact support if you think this is a mistake."
ADMIN_ONLY_TEXT = "Sorry, that command is for administrators only."
MAX_TEXT = 8192
# A claimed update whose worker has not finished after this long (task time limit 60 s) is claimed again.
UPDATE_CLAIM_LEASE = timedelta(seconds=120)
# The sweeper leaves a fresh update to the task queued for it for this long.
UPDATE_SWEEP_GRACE = timedelta(seconds=60)
UPDATE_MAX_ATTEMPTS = 5


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def update_handle(update: Any, *, deduplicate: bool = True) -> None:
    """Handle one Telegram update (a dict as the Bot API sends it). Never raises.

    ``deduplicate=False``: the caller already owns the stored row (``update_process``)."""
    try:
        _update_handle(update, deduplicate=deduplicate)
    except Exception as error:
        update_id = update.get("update_id") if isinstance(update, dict) else None
        logger.error("update %s failed: %s", update_id, type(error).__name__, exc_info=True)


def update_seen(*, update_id: int, kind: str) -> bool:
    """Record the update as handled in-process (long polling); False if it was already handled."""
    try:
        with transaction.atomic():
            TelegramUpdate.objects.create(update_id=update_id, kind=kind[:32], processed_at=timezone.now())
    except IntegrityError:
        return True
    return False


def update_process(*, update_id: int) -> bool:
    """Handle a stored update exactly once; False if it is already processed or another worker holds it.

    The claim is a lease (``claimed_at``): a re-delivered task skips the row while a worker handles it; a worker that
    died leaves it to the sweeper once the lease ran out. Replies are de-duplicated per update (the Delivery key), so
    a handling repeated after a crash does not message the user twice."""
    now = timezone.now()
    claimed = (
        TelegramUpdate.objects.filter(update_id=update_id, processed_at__isnull=True)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - UPDATE_CLAIM_LEASE))
        .update(claimed_at=now, attempts=F("attempts") + 1)
    )
    if not claimed:
        return False
    row = TelegramUpdate.objects.only("payload", "attempts").get(update_id=update_id)
    if row.attempts > UPDATE_MAX_ATTEMPTS:
        logger.error("update %s dropped after %s attempts", update_id, row.attempts - 1)
    else:
        try:
            update = json.loads(decrypt_secret(row.payload))
        except (SecretDecryptionError, ValueError):
            logger.error("update %s: the stored payload cannot be read; dropped", update_id)
        else:
            update_handle(update, deduplicate=False)
    TelegramUpdate.objects.filter(update_id=update_id).update(processed_at=timezone.now(), payload="")
    return True


def updates_process_stale(*, limit: int = 200) -> int:
    """Sweeper: process stored updates whose task never ran (enqueue failed) or whose worker died, oldest first."""
    now = timezone.now()
    stale = (
        TelegramUpdate.objects.filter(processed_at__isnull=True)
        .filter(
            Q(claimed_at__isnull=True, received_at__lt=now - UPDATE_SWEEP_GRACE)
            | Q(claimed_at__lt=now - UPDATE_CLAIM_LEASE)
        )
        .order_by("received_at")
        .values_list("update_id", flat=True)[:limit]
    )
    return sum(update_process(update_id=update_id) for update_id in list(stale))


def _update_handle(update: Any, *, deduplicate: bool = True) -> None:
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        return
    if isinstance(update.get("my_chat_member"), dict):
        _membership_changed(update["update_id"], update["my_chat_member"])
        return
    message = next((update[k] for k in ("message", "channel_post") if isinstance(update.get(k), dict)), None)
    callback = update.get("callback_query") if isinstance(update.get("callback_query"), dict) else None
    source = message or callback
    if source is None:
        return
    bot_message = callback.get("message") if callback and isinstance(callback.get("message"), dict) else {}
    chat = (message or bot_message).get("chat")
    chat = chat if isinstance(chat, dict) else {}
    chat_type = chat.get("type") if isinstance(chat.get("type"), str) else "private"
    sender = source.get("from")
    if chat_type == "channel" and message is not None:
        sender = None  # a channel post has no sender: it is the channel's (its admins')
    elif not isinstance(sender, dict) or _int(sender.get("id")) is None or sender.get("is_bot") is True:
        if not (
            chat_type in groups.GROUP_KINDS and message is not None and isinstance(message.get("sender_chat"), dict)
        ):
            return
        sender = None  # an anonymous group admin, posting as the group
    if deduplicate and update_seen(update_id=update["update_id"], kind="message" if message else "callback_query"):
        return

    telegram_id = sender["id"] if sender else None
    chat_id = _int(chat.get("id"))
    chat_id = telegram_id if chat_id is None else chat_id
    if chat_id is None:
        return
    message_id = _int(message.get("message_id")) if message else _int(bot_message.get("message_id"))
    callback_id = _str(callback.get("id"), 128) if callback else None
    if message is not None and _int(message.get("migrate_to_chat_id")) is not None:
        telegram_chat_migrate(old_chat_id=chat_id, new_chat_id=message["migrate_to_chat_id"])
        return

    existing = TelegramUser.objects.filter(telegram_id=telegram_id).first() if telegram_id is not None else None
    if chat_type != "private":
        ctx = UpdateContext(
            update_id=update["update_id"],
            user=existing,
            chat_id=str(chat_id),
            message_id=message_id,
            callback_id=callback_id or None,
            chat_type=chat_type,
        )
        _group_update_handle(ctx, message=message, callback=callback, sender=sender)
        return
    if existing is not None and existing.is_banned:
        refusal = UpdateContext(
            update_id=update["update_id"], user=existing, chat_id=str(chat_id), callback_id=callback_id or None
        )
        if callback_id:
            refusal.answer(BANNED_TEXT)
        elif message and isinstance(message.get("text"), str) and message["text"].startswith("/"):
            refusal.reply(BANNED_TEXT)
        refusal.flush()
        return

    user, created = telegram_user_register(
        telegram_id=telegram_id,
        username=_str(sender.get("username"), 64),
        first_name=_str(sender.get("first_name"), 128),
        language=_str(sender.get("language_code"), 8) or "en",
    )
    ctx = UpdateContext(
        update_id=update["update_id"],
        user=user,
        chat_id=str(chat_id),
        message_id=message_id,
        callback_id=callback_id or None,
    )
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


def _group_update_handle(
    ctx: UpdateContext, *, message: dict | None, callback: dict | None, sender: dict | None
) -> None:
    """A message or button press in a group, supergroup or channel: group-safe answers only (``groups``)."""
    sender_id = sender["id"] if sender else None
    if ctx.user is not None and ctx.user.is_banned:
        ctx.user = None  # a banned member gets what any stranger in the group gets, nothing personal
    try:
        if callback is not None:
            data = callback.get("data")
            name = groups.group_callback_handle(
                ctx, data if isinstance(data, str) and len(data) <= 64 else "", sender_id=sender_id
            )
        else:
            text = message.get("text") if isinstance(message.get("text"), str) else ""
            sender_chat = message.get("sender_chat") if isinstance(message.get("sender_chat"), dict) else {}
            if not text.strip():
                return
            name = groups.group_message_handle(
                ctx,
                text=text[:MAX_TEXT],
                sender_id=sender_id,
                sender_chat_id=_int(sender_chat.get("id")),
                dispatch=_command_dispatch,
                command_names=command_names(),
            )
        if ctx.user is not None:
            _activity(ctx.user, "callback" if callback is not None else "command", name)
    except Exception as error:
        ctx.replies.clear()
        ctx.reply(update_error_text(error, update_id=ctx.update_id))
    finally:
        ctx.answer()
        ctx.flush()


def update_error_text(error: BaseException, *, update_id: int | None) -> str:
    return bot_update_error(error, update_id=update_id)


def _membership_changed(update_id: int, change: dict) -> None:
    """The user blocked the bot (private chat, new status "kicked"): stop sending before a 403 says so. The bot was
    added to or removed from a group or channel: register or unregister it (``groups.membership_changed``)."""
    chat, new = change.get("chat"), change.get("new_chat_member")
    if not isinstance(chat, dict) or not isinstance(new, dict):
        return
    if chat.get("type") in groups.GROUP_KINDS:
        groups.membership_changed(update_id=update_id, change=change)
        return
    if chat.get("type") != "private":
        return
    telegram_id = _int(chat.get("id"))
    if telegram_id is not None and new.get("status") == "kicked":
        users = TelegramUser.objects.filter(telegram_id=telegram_id).values_list("id", flat=True)
        telegram_users_mark_blocked(user_ids=users)


def command_names() -> frozenset[str]:
    return frozenset(commands.COMMAND_HANDLERS) | frozenset(commands.ADMIN_HANDLERS)


KEY_STEPS = frozenset({"api_key", "secret", "passphrase"})


def _message_handle(ctx: UpdateContext, message: dict, *, created: bool) -> None:
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return
    text = text[:MAX_TEXT]
    state = conversation_get(telegram_id=ctx.user.telegram_id)
    names = command_names()
    awaiting_key = bool(state) and state.get("flow") == "connect" and state.get("step") in KEY_STEPS
    is_command = text.startswith("/") and text[1:].split(" ", 1)[0].split("@", 1)[0].lower() in names
    if awaiting_key and not is_command:
        # a key, even one that starts with "/": the connect step deletes it first, whatever it holds
        _activity(ctx.user, "command", callbacks.conversation_handle(ctx, state, text))
        return
    if looks_like_api_key(text, command_names=names):
        # a key sent after the conversation expired, outside it, or looking like a command: deleted all the same
        _activity(ctx.user, "command", "key_message")
        callbacks.key_message_delete(ctx)
        return
    if not text.startswith("/"):
        if state:
            _activity(ctx.user, "command", callbacks.conversation_handle(ctx, state, text))
        else:
            ctx.reply("Send /dashboard to get started, or /help for every command.")
        return
    head, _, args = text.partition(" ")
    name = head[1:].split("@", 1)[0].lower()
    conversation_end(telegram_id=ctx.user.telegram_id)  # any command ends a pending input
    if name in commands.ADMIN_HANDLERS and not ctx.is_admin:
        ctx.reply(ADMIN_ONLY_TEXT)  # refused: nothing runs, nothing is recorded
        return
    known = name in commands.COMMAND_HANDLERS or name in commands.ADMIN_HANDLERS
    _activity(ctx.user, "command", name if known else "unknown")
    if name == "start":
        onboarding.welcome(ctx, created=created)
    elif known:
        _command_dispatch(ctx, name, args)
    else:
        ctx.reply(texts.unknown_command(head, is_admin=ctx.is_admin))


def _command_dispatch(ctx: UpdateContext, name: str, args: str) -> None:
    """Run one command for ``ctx.user`` in ``ctx``'s chat (private: a personal command sent in a group runs here
    with the user's private chat as its chat)."""
    admin_handler = commands.ADMIN_HANDLERS.get(name)
    if admin_handler is not None and not ctx.is_admin:
        ctx.reply(ADMIN_ONLY_TEXT)
        return
    conversation_end(telegram_id=ctx.user.telegram_id)
    handler = commands.COMMAND_HANDLERS.get(name) or admin_handler
    if handler is commands.start:
        onboarding.welcome(ctx, created=False)
    elif handler is not None:
        handler(ctx, args.strip())


def _activity(user: TelegramUser, kind: str, name: str) -> None:
    activity_record(user=user, kind=kind, name=name[:64])


def telegram_updates_prune(*, older_than_days: int = 7) -> int:
    """Forget handled update ids after a week (Telegram keeps undelivered updates for 24 hours)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return TelegramUpdate.objects.filter(received_at__lt=cutoff, processed_at__isnull=False).delete()[0]


def telegram_updates_rotate_keys() -> int:
    """Re-encrypt the payloads of stored, not yet processed updates with the newest Fernet key (key rotation)."""
    rotated = 0
    for row in TelegramUpdate.objects.exclude(payload="").only("pk", "payload").iterator():
        try:
            token = rotate_secret(row.payload)
        except SecretDecryptionError:
            logger.warning("stored update %s: payload unreadable with the configured keys, left as is", row.pk)
            continue
        rotated += TelegramUpdate.objects.filter(pk=row.pk, payload=row.payload).update(payload=token)
    return rotated
