"""The webhook's inbox: a Telegram update is stored once (unique update_id, payload encrypted at rest: a /connect
answer carries exchange API keys) and its processing is queued after the commit.

``telegram_bridge.services.update_process`` then handles it exactly once; its sweeper handles a row whose task was
never queued (the broker was down) or whose worker died, so an answered update is never lost.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import IntegrityError, transaction

from accounts.crypto import encrypt_secret
from telegram_bridge.models import TelegramUpdate
from telegram_bridge.tasks import telegram_update_process

logger = logging.getLogger(__name__)

UPDATE_ID_MAX = 2**63 - 1
UPDATE_KINDS = ("message", "callback_query", "my_chat_member", "edited_message", "channel_post", "inline_query")


def _update_id(update: Any) -> int | None:
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        return None
    return update_id if 0 <= update_id <= UPDATE_ID_MAX else None


def update_receive(*, update: Any) -> bool:
    """Store a webhook update once and queue its processing after commit; True if it was new.

    Not an update at all (no integer update_id): nothing is stored, False."""
    update_id = _update_id(update)
    if update_id is None:
        return False
    kind = next((key for key in UPDATE_KINDS if key in update), next((k for k in update if k != "update_id"), ""))
    try:
        with transaction.atomic():
            TelegramUpdate.objects.create(
                update_id=update_id,
                kind=str(kind)[:32],
                payload=encrypt_secret(json.dumps(update, separators=(",", ":"))),
            )
    except IntegrityError:
        return False  # Telegram's re-delivery of an update already stored
    transaction.on_commit(lambda: _update_process_enqueue(update_id))
    return True


def _update_process_enqueue(update_id: int) -> None:
    try:
        telegram_update_process.delay(update_id=update_id)
    except Exception:  # the broker is down (or, eagerly, the handling crashed): the row is stored, the sweeper runs it
        logger.warning("update %s stored but not queued; the sweeper will process it", update_id, exc_info=True)
