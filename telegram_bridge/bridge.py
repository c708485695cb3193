"""Receiving updates: long polling against the configured Bot API server, and webhook registration."""

from __future__ import annotations

import logging
import threading
import time

from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.types import BotCommand
from django.conf import settings
from django.db import close_old_connections, connection

from telegram_bridge.services import update_handle
from telegram_bridge.texts import COMMANDS
from telegram_bridge.transport import get_transport

logger = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query"]


def bot_commands_set() -> None:
    """The command menu users see in their Telegram client."""
    transport = get_transport()
    menu = [BotCommand(command=name, description=summary[:256]) for name, (summary, _) in COMMANDS.items()]
    transport.call(transport.bot.set_my_commands(commands=menu))


def webhook_set(*, url: str) -> None:
    transport = get_transport()
    transport.call(transport.bot.set_webhook(url=url, secret_token=settings.TELEGRAM_WEBHOOK_SECRET,
                                             allowed_updates=ALLOWED_UPDATES))


def polling_run(*, timeout: int = 25, max_updates: int | None = None, stop: threading.Event | None = None) -> int:
    """getUpdates in a loop, each update handed to ``update_handle`` in order; returns how many were handled."""
    transport = get_transport()
    transport.call(transport.bot.delete_webhook(drop_pending_updates=False))
    offset: int | None = None
    handled = failures = 0
    while stop is None or not stop.is_set():
        try:
            updates = transport.call(
                transport.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES,
                                          request_timeout=timeout + 15),
                timeout=timeout + 30,
            )
            failures = 0
        except TelegramRetryAfter as error:
            time.sleep(error.retry_after)
            continue
        except (TelegramNetworkError, TelegramServerError) as error:
            failures += 1
            logger.warning("getUpdates failed (%s); retrying", type(error).__name__)
            time.sleep(min(2 ** failures, 30))
            continue
        if not connection.in_atomic_block:  # a long-lived process drops stale connections between batches
            close_old_connections()
        for update in updates:
            offset = update.update_id + 1
            update_handle(update.model_dump(mode="json", exclude_none=True, by_alias=True))
            handled += 1
            if max_updates and handled >= max_updates:
                _confirm(offset)
                return handled
    _confirm(offset)
    return handled


def _confirm(offset: int | None) -> None:
    """Tell the server which updates are handled (getUpdates confirms everything below ``offset``)."""
    if offset is None:
        return
    transport = get_transport()
    try:
        transport.call(transport.bot.get_updates(offset=offset, timeout=0, limit=1, allowed_updates=ALLOWED_UPDATES))
    except (TelegramNetworkError, TelegramServerError, TelegramRetryAfter):
        logger.warning("could not confirm updates below %s; they are de-duplicated on the next start", offset)
