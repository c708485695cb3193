"""The one way to read a symbol a user typed and to compare symbols: pure functions, no Django.

Users write "doge", "DOGE", "DOGEUSDT", "DOGE/USDT" or "DOGE/USDT:USDT"; all of them mean the USDT-margined
perpetual of DOGE, stored in ccxt's unified form ``DOGE/USDT:USDT``. Muting works on the base ("DOGE"), so a mute
stored in any of these spellings (older rows included) silences every DOGE signal in every interface.
"""

from __future__ import annotations

import re

SYMBOL_INPUT = re.compile(r"^[A-Z0-9]{1,20}(?:/[A-Z0-9]{1,10}(?::[A-Z0-9]{1,10})?)?$")
QUOTE = "USDT"


def symbol_canonical(text: str) -> str | None:
    """'doge', 'DOGEUSDT', 'DOGE/USDT', 'DOGE/USDT:USDT' → 'DOGE/USDT:USDT'; None when ``text`` is not a symbol."""
    if not isinstance(text, str):
        return None
    raw = text.strip().upper()
    if not SYMBOL_INPUT.match(raw):
        return None
    if "/" not in raw:
        base = raw.removesuffix(QUOTE) if raw.endswith(QUOTE) and len(raw) > len(QUOTE) else raw
        return f"{base}/{QUOTE}:{QUOTE}"
    if ":" not in raw:
        return f"{raw}:{raw.split('/')[1]}"
    return raw


def symbol_base(symbol: str) -> str:
    """The base asset of any spelling: 'DOGE/USDT:USDT', 'doge', 'DOGEUSDT' → 'DOGE' ("" when not a symbol)."""
    canonical = symbol_canonical(symbol)
    return canonical.split("/", 1)[0] if canonical else ""


def symbol_is_muted(symbol: str, muted: list | tuple | None) -> bool:
    """True when ``symbol`` (a signal's market) has its base among the ``muted`` symbols, however they are spelt."""
    base = symbol_base(symbol)
    return bool(base) and any(symbol_base(str(entry)) == base for entry in muted or ())


def symbols_same_market(first: str, second: str) -> bool:
    """Two spellings of the same perpetual market ('btc' and 'BTC/USDT:USDT')."""
    a, b = symbol_canonical(first), symbol_canonical(second)
    return a is not None and a == b
