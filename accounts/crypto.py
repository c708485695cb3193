"""Encryption of exchange API credentials at rest: MultiFernet over ``settings.FERNET_KEYS`` (newest key first).

Rotation: put a new key first in FERNET_KEYS, keep the old ones after it, run ``manage.py rotate_fernet_keys``
(re-encrypts every stored secret with the newest key), then drop the old keys.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key (the key was removed or the data is corrupt)."""


@lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FERNET_KEYS is empty: credentials cannot be encrypted.")
    try:
        return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("FERNET_KEYS holds a malformed key (expected url-safe base64 of 32 bytes).") from exc


def fernet() -> MultiFernet:
    return _multi_fernet(tuple(settings.FERNET_KEYS))


def encrypt_secret(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured FERNET_KEYS") from exc


def rotate_secret(token: str) -> str:
    """Re-encrypt ``token`` with the newest key (MultiFernet.rotate)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured FERNET_KEYS") from exc
