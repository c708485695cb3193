"""What a handler needs to answer one update: the user, the chat, and ways to reply, edit and answer."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from accounts.models import TelegramUser
from telegram_bridge.deliveries import OutgoingMessage, deliveries_create
from telegram_bridge.sending import deliveries_enqueue

logger = logging.getLogger(__name__)

# Updates stopped by the bridge's time limit (telegram_bridge.dispatch): what their handler still queues is dropped.
_cut_off_updates: set[int] = set()
_cut_off_lock = threading.Lock()


def update_cut_off_mark(update_id: int | None) -> None:
    with _cut_off_lock:
        _cut_off_updates.add(update_id)


def update_cut_off_clear(update_id: int | None) -> None:
    with _cut_off_lock:
        _cut_off_updates.discard(update_id)


def update_is_cut_off(update_id: int | None) -> bool:
    with _cut_off_lock:
        return update_id in _cut_off_updates


@dataclass
class UpdateContext:
    """``user`` is None only for an update from a group or channel whose sender has never talked to the bot
    privately (or a channel post, which has no sender): such updates get group-safe answers only."""

    update_id: int
    user: TelegramUser | None
    chat_id: str
    message_id: int | None = None  # the user's message, or the bot message carrying the pressed button
    callback_id: str | None = None
    replies: list[OutgoingMessage] = field(default_factory=list)
    answered: bool = False
    chat_type: str = "private"  # "private", "group", "supergroup" or "channel"

    @property
    def is_admin(self) -> bool:
        return self.user is not None and self.user.is_effective_admin

    @property
    def is_private(self) -> bool:
        return self.chat_type == "private"

    def reply(self, text: str, *, markup: dict | None = None) -> None:
        """Queue a message to this chat (sent through the rate-limited sender when the update is done)."""
        self.replies.append(
            OutgoingMessage(
                chat_id=self.chat_id,
                text=text,
                dedupe_key=f"update:{self.update_id}:{len(self.replies)}",
                # a group's message is the group's: a refusal there (403) unregisters the group, never blocks the user
                user_id=self.user.pk if self.user is not None and self.is_private else None,
                reply_markup=markup,
            )
        )

    def show(self, text: str, *, markup: dict | None = None) -> None:
        """For a button press: replace the message carrying the button; otherwise (or if that fails) reply."""
        if self.callback_id is not None and self.message_id is not None:
            # aiogram takes seconds to import: only a process that talks to Telegram loads it, on its first call.
            from aiogram.exceptions import TelegramBadRequest
            from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions

            from telegram_bridge.sender import telegram_call

            keyboard = InlineKeyboardMarkup.model_validate(markup) if markup else None

            async def edit(bot):
                try:
                    return await bot.edit_message_text(
                        chat_id=self.chat_id,
                        message_id=self.message_id,
                        text=text,
                        reply_markup=keyboard,
                        link_preview_options=LinkPreviewOptions(is_disabled=True),
                    )
                except TelegramBadRequest as error:
                    if "message is not modified" in error.message:
                        return True  # the same button pressed twice: the page already shows this
                    raise

            result = telegram_call(edit, chat_id=self.chat_id)
            if result is not None:
                return
        self.reply(text, markup=markup)

    def answer(self, text: str = "") -> None:
        """Answer the button press (stops the client's spinner); at most once."""
        if self.callback_id is None or self.answered:
            return
        self.answered = True
        callback_id = self.callback_id
        from telegram_bridge.sender import telegram_call  # aiogram on first use (see show)

        telegram_call(lambda bot: bot.answer_callback_query(callback_query_id=callback_id, text=text[:200] or None))

    def delete_user_message(self) -> bool:
        """Delete the message the user sent; True only when Telegram confirmed the deletion (say "deleted" only
        then)."""
        if self.message_id is None:
            return False
        message_id = self.message_id
        from telegram_bridge.sender import telegram_call  # aiogram on first use (see show)

        try:
            return telegram_call(lambda bot: bot.delete_message(chat_id=self.chat_id, message_id=message_id)) is True
        except Exception:  # a timeout or a transport failure: not confirmed, so not deleted as far as we know
            logger.info("deleteMessage in chat %s not confirmed", self.chat_id, exc_info=True)
            return False

    def flush(self) -> list[int]:
        """Store the queued replies and hand them to the sender; returns their delivery ids."""
        if not self.replies:
            return []
        if update_is_cut_off(self.update_id):  # the user was already told it took too long
            self.replies = []
            return []
        ids = deliveries_create(messages=self.replies)
        self.replies = []
        deliveries_enqueue(ids)
        return ids
