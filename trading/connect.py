"""Connecting and disconnecting a user's exchange account (the /connect flow of the bot, the web and the API).

Keys are validated with a read-only call (balance) BEFORE anything is stored, then stored only encrypted
(``accounts.services.exchange_credential_create``: MultiFernet, one active exchange per user, last 4 characters kept
for display). Keys never reach a log line, an error message, the admin or a Celery task argument (tasks get the
credential id): errors raised here carry a polite user-facing text only.
"""

from __future__ import annotations

import logging

from accounts.models import ApiSecrets, Exchange, ExchangeCredential, TelegramUser
from accounts.services import exchange_credential_create, exchange_credential_deactivate
from exchanges import SyncExchangeClient, exchange_client_build
from exchanges.errors import (
    AuthenticationFailed,
    ExchangeConnectError,
    ExchangeError,
    RetryableExchangeError,
    retry_call,
)

logger = logging.getLogger(__name__)

NEEDS_PASSPHRASE = {"okx", "kucoinfutures"}


def exchange_connect(*, user: TelegramUser, exchange: str, api_key: str, secret: str, passphrase: str = "") -> ExchangeCredential:
    exchange = (exchange or "").strip().lower()
    api_key, secret, passphrase = (api_key or "").strip(), (secret or "").strip(), (passphrase or "").strip()
    labels = dict(Exchange.choices)
    if exchange not in labels:
        raise ExchangeConnectError(f"Unsupported exchange. Choose one of: {', '.join(labels.values())}.", reason="unsupported")
    label = labels[exchange]
    if not api_key or not secret:
        raise ExchangeConnectError("Please send both the API key and the secret.", reason="missing")
    if exchange in NEEDS_PASSPHRASE and not passphrase:
        raise ExchangeConnectError(f"{label} API keys come with a passphrase: please send it too.", reason="missing")
    client = exchange_client_build(exchange=exchange, api_key=api_key, secret=secret, passphrase=passphrase, user_id=user.pk)
    try:
        with SyncExchangeClient(client) as sync_client:
            balance = retry_call(lambda: sync_client.fetch_balance("USDT"), attempts=2, base=0.5, description=f"{exchange} balance check")
    except AuthenticationFailed:
        logger.info("user %s: %s rejected the keys ending %s", user.pk, exchange, api_key[-4:])
        raise ExchangeConnectError(
            f"{label} rejected these API keys. Check the key, secret and passphrase, that the key may read and trade "
            "futures, and the IP whitelist, then try again.",
            reason="auth",
        ) from None
    except RetryableExchangeError:
        logger.info("user %s: %s unreachable during connect", user.pk, exchange)
        raise ExchangeConnectError(f"{label} could not be reached right now. Please try again in a minute.", reason="network") from None
    except ExchangeError:
        logger.info("user %s: %s refused the balance check", user.pk, exchange)
        raise ExchangeConnectError(f"{label} did not accept the balance check with these keys. Please verify them.", reason="refused") from None
    credential = exchange_credential_create(user=user, exchange=exchange, secrets=ApiSecrets(api_key=api_key, secret=secret, passphrase=passphrase))
    logger.info("user %s connected %s (key …%s, %s USDT free)", user.pk, exchange, credential.last4, balance.free)
    return credential


def exchange_disconnect(*, user: TelegramUser) -> int:
    """Deactivate the user's active credential (kept encrypted for the audit trail; a user trading live is back in
    paper mode). Returns how many were active."""
    count = exchange_credential_deactivate(user=user, reason="disconnected by the user")
    logger.info("user %s disconnected %d exchange credential(s)", user.pk, count)
    return count
