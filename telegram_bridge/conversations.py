"""Multi-message inputs (/connect, settings values): a short-lived state per user in the cache (Redis in production).

Partial exchange credentials are kept only here, Fernet-encrypted, for at most ``TTL_SECONDS``; never in a model,
a log line or a task argument.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

from accounts.crypto import decrypt_secret, encrypt_secret

TTL_SECONDS = 600
SECRET_FIELDS = ("api_key", "secret", "passphrase")


def _key(telegram_id: int) -> str:
    return f"tg:conversation:{telegram_id}"


def conversation_get(*, telegram_id: int) -> dict[str, Any] | None:
    state = cache.get(_key(telegram_id))
    return state if isinstance(state, dict) else None


def conversation_set(*, telegram_id: int, state: dict[str, Any]) -> None:
    """Store ``state`` as is: put secrets in it only through ``secret_seal``."""
    cache.set(_key(telegram_id), state, TTL_SECONDS)


def secret_seal(value: str) -> str:
    return encrypt_secret(value)


def conversation_secrets(state: dict[str, Any]) -> dict[str, str]:
    return {k: decrypt_secret(state[k]) for k in SECRET_FIELDS if state.get(k)}


def conversation_end(*, telegram_id: int) -> None:
    cache.delete(_key(telegram_id))
