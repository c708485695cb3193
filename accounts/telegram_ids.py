"""What a Telegram user id can be (pure): positive, at most 52 significant bits (Bot API documentation)."""

from __future__ import annotations

from typing import Any

TELEGRAM_ID_MAX = 2**52 - 1


def telegram_id_valid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= TELEGRAM_ID_MAX
