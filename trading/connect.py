"""Connecting and disconnecting a user's exchange account (the /connect flow of the bot, the web and the API).

Keys are verified BEFORE anything is stored: a read-only call (balance), then the key's permissions where the
exchange's API tells them (OKX): a key that cannot trade is refused with what to fix, a key that can withdraw is
stored with a warning; MEXC keys get a warning that MEXC keeps its futures order API closed to most accounts (its
refusal of an order is recognised and told in plain words: ``trading.exchange_messages``). Then they are stored only encrypted
(``accounts.services.exchange_credential_create``: MultiFernet, one active exchange per user, last 4 characters kept
for display). Keys never reach a log line, an error message, the admin or a Celery task argument (tasks get the
credential id): errors raised here carry a polite user-facing text only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from accounts.models import ApiSecrets, Exchange, ExchangeCredential, TelegramUser
from accounts.services import exchange_credential_create, exchange_credential_deactivate
from exchanges import SyncExchangeClient, exchange_client_build
from exchanges.capabilities import capabilities
from exchanges.errors import (
    AuthenticationFailed,
    ExchangeConnectError,
    ExchangeError,
    RetryableExchangeError,
    retry_call,
)
from trading.exchange_messages import MEXC_RESTRICTED

logger = logging.getLogger(__name__)

NEEDS_PASSPHRASE = {"okx", "kucoinfutures"}


@dataclass(frozen=True)
class ConnectOutcome:
    credential: ExchangeCredential
    free_balance: Decimal
    warnings: list[str] = field(default_factory=list)  # written for the trader


def exchange_connect(
    *, user: TelegramUser, exchange: str, api_key: str, secret: str, passphrase: str = ""
) -> ExchangeCredential:
    """Verify and store the keys (``exchange_connect_verified``); returns the stored credential."""
    return exchange_connect_verified(
        user=user, exchange=exchange, api_key=api_key, secret=secret, passphrase=passphrase
    ).credential


def exchange_connect_verified(
    *, user: TelegramUser, exchange: str, api_key: str, secret: str, passphrase: str = ""
) -> ConnectOutcome:
    """Verify the keys against the exchange, then store them; raises ``ExchangeConnectError`` (what to fix, in
    plain words) and stores nothing when they cannot be used."""
    exchange = (exchange or "").strip().lower()
    api_key, secret, passphrase = (api_key or "").strip(), (secret or "").strip(), (passphrase or "").strip()
    labels = dict(Exchange.choices)
    if exchange not in labels:
        raise ExchangeConnectError(
            f"Unsupported exchange. Choose one of: {', '.join(labels.values())}.", reason="unsupported"
        )
    label = labels[exchange]
    if not api_key or not secret:
        raise ExchangeConnectError("Please send both the API key and the secret.", reason="missing")
    if exchange in NEEDS_PASSPHRASE and not passphrase:
        raise ExchangeConnectError(f"{label} API keys come with a passphrase: please send it too.", reason="missing")
    client = exchange_client_build(
        exchange=exchange, api_key=api_key, secret=secret, passphrase=passphrase, user_id=user.pk
    )
    try:
        with SyncExchangeClient(client) as sync_client:
            balance = retry_call(
                lambda: sync_client.fetch_balance("USDT"), attempts=2, base=0.5, description=f"{exchange} balance check"
            )
            permissions = retry_call(
                sync_client.key_permissions, attempts=2, base=0.5, description=f"{exchange} key permissions"
            )
    except AuthenticationFailed:
        logger.info("user %s: %s rejected the keys ending %s", user.pk, exchange, api_key[-4:])
        raise ExchangeConnectError(
            f"{label} rejected these API keys. Check that you copied the key, the secret"
            f"{' and the passphrase' if exchange in NEEDS_PASSPHRASE else ''} completely, that the key may read and "
            "trade futures, and that its IP whitelist is empty or includes this service; then send /connect again.",
            reason="auth",
        ) from None
    except RetryableExchangeError:
        logger.info("user %s: %s unreachable during connect", user.pk, exchange)
        raise ExchangeConnectError(
            f"{label} could not be reached right now. Please try again in a minute.", reason="network"
        ) from None
    except ExchangeError:
        logger.info("user %s: %s refused the balance check", user.pk, exchange)
        raise ExchangeConnectError(
            f"{label} did not accept the balance check with these keys. Please verify them.", reason="refused"
        ) from None
    warnings = []
    if permissions is not None and not permissions.trade:
        logger.info("user %s: %s key ending %s has no trade permission", user.pk, exchange, api_key[-4:])
        raise ExchangeConnectError(
            f"This {label} key can read your account but not trade. Edit the key on {label} (or make a new one) "
            "with the Trade permission ticked, and withdrawals off, then send /connect again.",
            reason="no_trade_permission",
        )
    if permissions is not None and permissions.withdraw:
        warnings.append(
            f"This key can also withdraw funds. I never withdraw, but a leaked key could: on {label}, "
            "untick Withdraw for this key (or make a new one without it)."
        )
    if capabilities(exchange).futures_order_api_restricted:
        warnings.append(
            f"{MEXC_RESTRICTED}. If MEXC refuses my first order, I will tell you and switch "
            "auto-trading off; your balance and positions can still be read."
        )
    credential = exchange_credential_create(
        user=user, exchange=exchange, secrets=ApiSecrets(api_key=api_key, secret=secret, passphrase=passphrase)
    )
    logger.info("user %s connected %s (key …%s, %s USDT free)", user.pk, exchange, credential.last4, balance.free)
    return ConnectOutcome(credential=credential, free_balance=balance.free, warnings=warnings)


def exchange_disconnect(*, user: TelegramUser) -> int:
    """Deactivate the user's active credential (kept encrypted for the audit trail; a user trading live is back in
    paper mode). Returns how many were active."""
    count = exchange_credential_deactivate(user=user, reason="disconnected by the user")
    logger.info("user %s disconnected %d exchange credential(s)", user.pk, count)
    return count
