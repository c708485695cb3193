"""Does a chat message look like an exchange API key, secret or passphrase? (pure)

Exchanges issue keys as one long token: OKX a UUID, KuCoin 24 hex characters, MEXC ``mx0v…``, Bitunix 32 hex, secrets
as hex or base64 (which may start with ``/``). The bot deletes any message of that shape, whatever the conversation
state (also after the ``/connect`` conversation expired, or when the text starts with ``/``), so a key never stays
visible in a chat. Commands, symbols (``1000PEPE/USDT:USDT``), numbers and sentences do not match.
"""

from __future__ import annotations

import re

MIN_LENGTH = 16
MAX_LENGTH = 512
_KEY_SHAPE = re.compile(r"[A-Za-z0-9+/=_\-.]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def looks_like_api_key(text: str, *, command_names: frozenset[str] | set[str] = frozenset()) -> bool:
    """True for one token of 16–512 key characters mixing letters and digits with enough distinct characters;
    ``command_names``: a ``/name`` (or ``/name@bot``) that is one of the bot's commands is a command, not a key."""
    token = text.strip()
    if not MIN_LENGTH <= len(token) <= MAX_LENGTH or any(c.isspace() for c in token):
        return False
    if token.startswith("/"):
        name = token[1:].split("@", 1)[0].lower()
        if name in command_names:
            return False
    if _UUID.fullmatch(token):
        return True
    if not _KEY_SHAPE.fullmatch(token):
        return False
    letters = sum(c.isalpha() for c in token)
    digits = sum(c.isdigit() for c in token)
    if not letters or not digits:
        return False
    return len(set(token)) >= 10
