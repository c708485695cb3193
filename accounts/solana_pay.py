"""Solana Pay transfer requests (https://docs.solanapay.com/spec) and Solana key formats: pure functions.

A transfer request is a URL ``solana:<recipient>?amount=<amount>&spl-token=<mint>&reference=<key>&label=…&message=…``
that a wallet turns into a transfer. ``amount`` is in user units (SOL or tokens) written as a plain decimal with no
more decimals than the mint has; ``reference`` is a public-key-shaped value the wallet adds to the transfer
instruction as a read-only account, so the paying transaction can be found and matched to this request.
"""

from __future__ import annotations

import io
import secrets
from decimal import Decimal
from urllib.parse import quote

import segno

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {char: index for index, char in enumerate(BASE58_ALPHABET)}

# Mints shown by name; any other SPL token is shown by the start of its mint address.
KNOWN_MINTS = {
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v": "USDC",
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB": "USDT",
}
SOL_DECIMALS = 9


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    text = ""
    while number:
        number, remainder = divmod(number, 58)
        text = BASE58_ALPHABET[remainder] + text
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + text


def b58decode(text: str) -> bytes:
    """Raises ValueError for a character outside the alphabet."""
    number = 0
    for char in text:
        try:
            number = number * 58 + _BASE58_INDEX[char]
        except KeyError:
            raise ValueError("not base58") from None
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    leading_ones = len(text) - len(text.lstrip("1"))
    return b"\0" * leading_ones + body


def _decodes_to(text: object, size: int, max_chars: int) -> bool:
    if not isinstance(text, str) or not 1 <= len(text) <= max_chars:
        return False
    try:
        return len(b58decode(text)) == size
    except ValueError:
        return False


def solana_address_valid(text: object) -> bool:
    """A public key: base58 of 32 bytes (32 to 44 characters)."""
    return _decodes_to(text, 32, 44)


def solana_signature_valid(text: object) -> bool:
    """A transaction signature: base58 of 64 bytes (up to 88 characters)."""
    return _decodes_to(text, 64, 88)


def reference_new() -> str:
    """A fresh, unique reference key for one payment request: 32 random bytes in base58, shaped like a public key."""
    return b58encode(secrets.token_bytes(32))


def currency_of_mint(mint: str) -> str:
    if not mint:
        return "SOL"
    return KNOWN_MINTS.get(mint, mint[:4] + "…")


def amount_text(base_units: int, decimals: int) -> str:
    """Integer base units as the plain decimal a Solana Pay URL (and a person) reads: 25000000, 6 → "25"."""
    value = Decimal(base_units).scaleb(-decimals)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def transfer_request_url(
    *, recipient: str, amount_base_units: int, decimals: int, mint: str, reference: str, label: str, message: str
) -> str:
    """The Solana Pay transfer request URL (native SOL when ``mint`` is empty)."""
    params = [f"amount={amount_text(amount_base_units, decimals)}"]
    if mint:
        params.append(f"spl-token={mint}")
    params.append(f"reference={reference}")
    if label:
        params.append(f"label={quote(label, safe='')}")
    if message:
        params.append(f"message={quote(message, safe='')}")
    return f"solana:{recipient}?" + "&".join(params)


def qr_png(text: str, *, scale: int = 8) -> bytes:
    """The QR code of ``text`` (a transfer request URL) as a PNG image."""
    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def qr_svg_data_uri(text: str, *, scale: int = 6) -> str:
    """The same QR code as an SVG ``data:`` URI, for an ``<img src>`` on a web page."""
    return segno.make(text, error="m").svg_data_uri(scale=scale, border=4)
