"""An exchange's refusal in plain words: what happened and the one thing the trader can do about it.

Used where a final exchange error switches a trader's auto-trading off (``trading.executors.live``) and by /connect.
The exchange's raw answer stays in the order's ``error`` column and the logs, never in a chat message.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Exchange
from exchanges.errors import AuthenticationFailed, ExchangeError, InsufficientBalance, OrderApiRestricted


@dataclass(frozen=True)
class RefusalWords:
    reason: str  # short, shown after "Auto-trading: off (…)" in /status and on the dashboard
    advice: str  # what to do, one or two sentences


MEXC_RESTRICTED = (
    "MEXC does not let ordinary accounts place futures orders through its API (it keeps that closed to most users)"
)


def exchange_label(exchange: str) -> str:
    return dict(Exchange.choices).get(exchange, exchange or "Your exchange")


def refusal_words(error: ExchangeError, *, exchange: str) -> RefusalWords:
    label = exchange_label(exchange or error.exchange)
    if isinstance(error, OrderApiRestricted):
        return RefusalWords(
            f"{label} refuses futures orders from your API key",
            f"{MEXC_RESTRICTED if label == 'MEXC' else label + ' does not accept futures orders from these keys'}. "
            "Your keys still read your balance, but I cannot trade with them: connect another exchange with "
            "/connect, or ask the exchange's support to enable futures trading through the API for your account.",
        )
    if isinstance(error, AuthenticationFailed):
        return RefusalWords(
            f"{label} refused your API key",
            "The key may have been deleted or expired, lack the trade permission, or your IP whitelist does not "
            "include this service. Make a new key with read and trade rights (no withdrawals), send /connect, then "
            "/autotrade on.",
        )
    if isinstance(error, InsufficientBalance):
        return RefusalWords(
            f"{label}: not enough margin for the order",
            "Add funds to your futures account or lower your position size in /settings, then /autotrade on.",
        )
    return RefusalWords(
        f"{label} refused an order",
        "Check your exchange account and API keys, then switch auto-trading on again with /autotrade on (or on the "
        "settings page of the web dashboard).",
    )
