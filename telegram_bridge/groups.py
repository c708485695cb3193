"""The bot in groups, supergroups and channels: registration, what it answers there, and the group's own filters.

* ``membership_changed``: Telegram's ``my_chat_member`` update. Added to a group or channel → registered for signal
  cards (``accounts.services.telegram_chat_register``) and a short welcome; removed → unregistered (a 403 on a send
  unregisters it too: ``telegram_bridge.deliveries``).
* Privacy: in a group or channel the bot answers only group-safe commands (``GROUP_SAFE_COMMANDS``). Anything
  personal (PnL, positions, status, settings, the dashboard and its one-time login link, ``/connect``) is answered in
  the sender's private chat, with "I've sent it to you privately" in the group; a sender the bot cannot write to
  (never started a private chat, blocked the bot) gets a pointer to the private chat instead. A login link or a key
  request never goes to a group.
* A group admin (Telegram's own admin list; any poster in a channel, as only admins post there) sets what the group
  receives — signal sources, risk levels, muted coins — with ``/filters`` (buttons) and ``/mute`` / ``/unmute``,
  written by ``accounts.services.chat_filters_update`` and read by ``accounts.policy.signal_reaches_chat``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from accounts.models import RISK_LEVELS, TelegramChat, TelegramUser
from accounts.services import chat_filters_update, telegram_chat_register, telegram_chats_unregister
from accounts.symbols import symbol_base, symbol_canonical
from telegram_bridge import commands
from telegram_bridge.deliveries import OutgoingMessage, deliveries_create
from telegram_bridge.sending import deliveries_enqueue
from telegram_bridge.telegram_html import escape
from telegram_bridge.update_context import UpdateContext

logger = logging.getLogger(__name__)

GROUP_KINDS = frozenset(TelegramChat.Kind.values)
GROUP_SAFE_COMMANDS = frozenset({"start", "help", "signals", "filters", "mute", "unmute"})
ADMIN_STATUSES = frozenset({"creator", "administrator"})
MEMBER_STATUSES = frozenset({"member", "administrator", "creator", "restricted"})
FILTER_TOGGLES = {"news_signals": "News signals", "flow_signals": "Order-flow signals"}
CALLBACK_PREFIX = "g:"
ADMINS_ONLY = "Only this group's admins can change what it receives."


# ---- links and admin checks ---------------------------------------------------------------------------------------


def bot_username() -> str:
    """The bot's @username (``TELEGRAM_BOT_USERNAME``, else asked once from Telegram and cached for a day)."""
    if settings.TELEGRAM_BOT_USERNAME:
        return settings.TELEGRAM_BOT_USERNAME.lstrip("@")
    cached = cache.get("tg:bot_username")
    if cached:
        return cached
    from telegram_bridge.sender import telegram_call  # aiogram on first use

    try:
        me = telegram_call(lambda bot: bot.get_me())
    except Exception:
        me = None
    username = getattr(me, "username", "") or ""
    if username:
        cache.set("tg:bot_username", username, 86_400)
    return username


def private_chat_link() -> str:
    username = bot_username()
    return f"https://t.me/{username}" if username else ""


def private_chat_pointer() -> tuple[str, dict | None]:
    """The refusal for a personal command in a group, with a button that opens the private chat."""
    link = private_chat_link()
    text = "🔒 That is personal, so I answer it only in a private chat. " + (
        f"Open a private chat with me: {escape(link.removeprefix('https://'))}, press Start, then send the "
        "command there."
        if link
        else "Open a private chat with me, press Start, then send the command there."
    )
    markup = {"inline_keyboard": [[{"text": "💬 Open a private chat", "url": link}]]} if link else None
    return text, markup


def sender_is_chat_admin(ctx: UpdateContext, *, sender_id: int | None, sender_chat_id: int | None) -> bool:
    """Channel posts come from the channel's admins; an anonymous group admin posts as the group itself; anyone
    else is asked of Telegram (getChatMember)."""
    if ctx.chat_type == "channel" or (sender_chat_id is not None and str(sender_chat_id) == ctx.chat_id):
        return True
    if sender_id is None:
        return False
    from telegram_bridge.sender import telegram_call  # aiogram on first use

    try:
        member = telegram_call(lambda bot: bot.get_chat_member(chat_id=ctx.chat_id, user_id=sender_id))
    except Exception:
        logger.info("getChatMember failed in chat %s", ctx.chat_id, exc_info=True)
        return False
    return getattr(member, "status", "") in ADMIN_STATUSES


# ---- membership -----------------------------------------------------------------------------------------------------


def membership_changed(*, update_id: int, change: dict[str, Any]) -> None:
    """``my_chat_member`` of a group or channel: register it when the bot joins, unregister it when it leaves."""
    chat, new = change.get("chat"), change.get("new_chat_member")
    if not isinstance(chat, dict) or not isinstance(new, dict) or chat.get("type") not in GROUP_KINDS:
        return
    chat_id = chat.get("id")
    if not isinstance(chat_id, int) or isinstance(chat_id, bool) or chat_id >= 0:
        return
    status = new.get("status")
    if status in ("left", "kicked") or (status == "restricted" and new.get("is_member") is False):
        telegram_chats_unregister(chat_ids=[chat_id], reason="the bot was removed")
        return
    if status not in MEMBER_STATUSES:
        return
    sender = change.get("from") if isinstance(change.get("from"), dict) else {}
    added_by = (
        TelegramUser.objects.filter(telegram_id=sender.get("id")).first() if isinstance(sender.get("id"), int) else None
    )
    title = chat.get("title") if isinstance(chat.get("title"), str) else ""
    username = chat.get("username") if isinstance(chat.get("username"), str) else ""
    registered, created = telegram_chat_register(
        chat_id=chat_id, kind=chat["type"], title=title, username=username, added_by=added_by
    )
    old = change.get("old_chat_member") if isinstance(change.get("old_chat_member"), dict) else {}
    if created or old.get("status") in ("left", "kicked"):
        ids = deliveries_create(
            messages=[
                OutgoingMessage(
                    chat_id=str(chat_id),
                    text=group_welcome(registered),
                    dedupe_key=f"chat:{chat_id}:welcome:{update_id}",
                )
            ]
        )
        deliveries_enqueue(ids)


def group_welcome(chat: TelegramChat) -> str:
    where = "channel" if chat.kind == TelegramChat.Kind.CHANNEL else "group"
    link = private_chat_link()
    private = (
        f" in a private chat with me ({escape(link.removeprefix('https://'))})"
        if link
        else " in a private chat with me"
    )
    return (
        f"👋 Thanks for adding me! I will post new signal cards in this {where}.\n"
        f"{filters_text(chat)}\n\n"
        f"Admins: /filters chooses the sources and risk levels, /mute COIN silences a coin here.\n"
        f"Personal things (PnL, positions, /connect, the dashboard) stay private: use them{private}."
    )


# ---- what the bot answers in a group or channel ------------------------------------------------------------------

Dispatch = Callable[[UpdateContext, str, str], None]


def group_message_handle(
    ctx: UpdateContext,
    *,
    text: str,
    sender_id: int | None,
    sender_chat_id: int | None,
    dispatch: Dispatch,
    command_names: frozenset[str],
) -> str:
    """A message in a group or channel; returns the activity name. ``dispatch(ctx, name, args)`` runs a personal
    command in the sender's private chat (the bot's usual command dispatch)."""
    from telegram_bridge.key_messages import looks_like_api_key

    if looks_like_api_key(text, command_names=command_names):
        deleted = ctx.delete_user_message()
        ctx.reply(
            "🔒 That looked like an API key, so I deleted it. Never post keys in a group: connect your exchange "
            "in a private chat with me (/connect there), and make a new key if others may have seen this one."
            if deleted
            else "⚠️ That looks like an API key and I could not delete it: delete it now, and make a new key on "
            "your exchange if others may have seen it."
        )
        return "key_message"
    if not text.startswith("/"):
        return "group_message"
    head, _, args = text.partition(" ")
    name, _, addressee = head[1:].partition("@")
    name = name.lower()
    if addressee and bot_username() and addressee.lower() != bot_username().lower():
        return "other_bot"  # /command@another_bot is not for us
    if name in GROUP_SAFE_COMMANDS:
        _group_command(ctx, name, args.strip(), sender_id=sender_id, sender_chat_id=sender_chat_id)
        return f"group:{name}"
    if name not in command_names:
        return "group:unknown"  # other bots' commands are common in groups: no answer
    user = ctx.user
    if user is None or not user.is_active or user.is_banned:
        pointer, markup = private_chat_pointer()
        ctx.reply(pointer, markup=markup)
        return f"group_refused:{name}"
    private = UpdateContext(update_id=ctx.update_id, user=user, chat_id=str(user.telegram_id), chat_type="private")
    try:
        dispatch(private, name, args)
    finally:
        private.flush()
    mention = f"@{escape(user.username)}" if user.username else escape(user.first_name or "you")
    ctx.reply(f"📬 {mention}, I've sent it to you privately.")
    return f"group_private:{name}"


def _group_command(
    ctx: UpdateContext, name: str, args: str, *, sender_id: int | None, sender_chat_id: int | None
) -> None:
    chat = TelegramChat.objects.filter(chat_id=int(ctx.chat_id), is_active=True).first()
    if name == "start" or name == "help":
        ctx.reply(group_help(chat))
    elif name == "signals":
        ctx.reply(commands.signals_text())
    elif chat is None:
        ctx.reply("This chat is not registered for signals. Remove me and add me again to register it.")
    elif name == "filters":
        ctx.reply(filters_text(chat), markup=filters_keyboard(chat))
    elif not sender_is_chat_admin(ctx, sender_id=sender_id, sender_chat_id=sender_chat_id):
        ctx.reply(ADMINS_ONLY)
    else:
        _group_mute(ctx, chat, name, args)


def _group_mute(ctx: UpdateContext, chat: TelegramChat, name: str, args: str) -> None:
    symbol = symbol_canonical(args.split()[0]) if args.split() else None
    if symbol is None:
        ctx.reply(f"Usage: /{name} COIN, e.g. /{name} DOGE")
        return
    muted = list(chat.muted_symbols or [])
    same = [entry for entry in muted if symbol_base(entry) == symbol_base(symbol)]
    coin = escape(symbol_base(symbol))
    if name == "mute" and same:
        ctx.reply(f"{coin} is already muted in this chat.")
    elif name == "unmute" and not same:
        ctx.reply(f"{coin} is not muted in this chat.")
    elif _filters_change(
        ctx,
        chat,
        {"muted_symbols": [*muted, symbol] if name == "mute" else [entry for entry in muted if entry not in same]},
    ):
        ctx.reply(f"🔇 {coin} muted in this chat." if name == "mute" else f"🔔 {coin} unmuted in this chat.")


def _filters_change(ctx: UpdateContext, chat: TelegramChat, changes: dict) -> bool:
    try:
        chat_filters_update(chat=chat, changes=changes)
    except ValidationError as error:
        ctx.reply(commands.validation_message(error))
        return False
    return True


def group_help(chat: TelegramChat | None) -> str:
    link = private_chat_link()
    lines = [
        "<b>In this chat</b>",
        "/signals — recent and open signals",
        "/filters — what this chat receives",
        "/mute COIN, /unmute COIN — silence a coin here (admins)",
        "",
        "Personal commands (/pnl, /positions, /status, /settings, /dashboard, /connect) are answered in a "
        "private chat only" + (f": {escape(link.removeprefix('https://'))}" if link else "."),
    ]
    if chat is not None:
        lines += ["", filters_text(chat)]
    return "\n".join(lines)


def filters_text(chat: TelegramChat) -> str:
    sources = ", ".join(
        ["technical", *(["news"] if chat.news_signals else []), *(["order flow"] if chat.flow_signals else [])]
    )
    muted = ", ".join(symbol_base(symbol) for symbol in chat.muted_symbols or []) or "none"
    return (
        f"<b>Signals posted here</b>\nSources: {escape(sources)}\n"
        f"Risk levels: {escape(', '.join(chat.accepted_risk_levels or []))}\nMuted: {escape(muted)}"
    )


def filters_keyboard(chat: TelegramChat) -> dict:
    toggles = [
        {"text": f"{'✅' if getattr(chat, name) else '⬜'} {label}", "callback_data": f"g:t:{name}"}
        for name, label in FILTER_TOGGLES.items()
    ]
    levels = chat.accepted_risk_levels or []
    risk = [
        {"text": f"{'✅' if level in levels else '⬜'} {level} risk", "callback_data": f"g:r:{level}"}
        for level in RISK_LEVELS
    ]
    return {"inline_keyboard": [toggles, risk]}


def issued_callback_data() -> set[str]:
    return {f"g:t:{name}" for name in FILTER_TOGGLES} | {f"g:r:{level}" for level in RISK_LEVELS}


def group_callback_handle(ctx: UpdateContext, data: str, *, sender_id: int | None) -> str:
    """A button pressed in a group: the group's filter buttons (admins only); any personal button is refused."""
    if data not in issued_callback_data():
        ctx.answer("That is personal: open a private chat with me for it.")
        return "group_callback_refused"
    chat = TelegramChat.objects.filter(chat_id=int(ctx.chat_id), is_active=True).first()
    if chat is None:
        ctx.answer("This chat is not registered for signals.")
        return "group_callback_unregistered"
    if not sender_is_chat_admin(ctx, sender_id=sender_id, sender_chat_id=None):
        ctx.answer(ADMINS_ONLY)
        return "group_callback_not_admin"
    _, control, name = data.split(":", 2)
    if control == "t":
        changed = _filters_change(ctx, chat, {name: not getattr(chat, name)})
    else:
        levels = list(chat.accepted_risk_levels or [])
        levels = [level for level in levels if level != name] if name in levels else [*levels, name]
        changed = _filters_change(ctx, chat, {"accepted_risk_levels": levels})
    if changed:
        chat.refresh_from_db()
        ctx.answer("Saved.")
        ctx.show(filters_text(chat), markup=filters_keyboard(chat))
    return f"group_filter:{control}"
