"""Exchange adapters behind one port (``trading.exchanges.base.ExchangeClient``), picked in one place.

``exchange_client_for(credential)`` returns the async client for a stored credential: ccxt for KuCoin Futures, OKX
and MEXC, the hand-written adapter for Bitunix, or the in-process fake when ``settings.LIVE_EXCHANGE_CLIENT ==
"fake"`` (tests, demo). ``SyncExchangeClient`` drives any of them from synchronous code (Celery tasks, services).
"""

from __future__ import annotations

from django.conf import settings

from trading.exchanges.base import ExchangeClient
from trading.exchanges.sync import SyncExchangeClient

__all__ = ["ExchangeClient", "SyncExchangeClient", "exchange_client_build", "exchange_client_for", "fake_account_name"]


def fake_account_name(*, user_id: int) -> str:
    return f"user-{user_id}"


def exchange_client_build(*, exchange: str, api_key: str, secret: str, passphrase: str = "", user_id: int | None = None) -> ExchangeClient:
    """A client for raw keys (used by /connect before anything is stored)."""
    if settings.LIVE_EXCHANGE_CLIENT == "fake":
        from testsupport.exchanges.fake import FakeExchangeClient, fake_account

        return FakeExchangeClient(fake_account(fake_account_name(user_id=user_id or 0)), exchange_id=exchange)
    if exchange == "bitunix":
        from trading.exchanges.bitunix import BitunixClient

        base_url = settings.BITUNIX_BASE_URL
        return BitunixClient(api_key=api_key, secret=secret, base_url=base_url, timeout=settings.LIVE_HTTP_TIMEOUT_SECONDS)
    from trading.exchanges.ccxt_client import CcxtExchangeClient

    return CcxtExchangeClient(exchange, api_key=api_key, secret=secret, passphrase=passphrase)


def exchange_client_for(credential) -> ExchangeClient:
    """The async client for a stored ``accounts.ExchangeCredential`` (secrets decrypted in memory only)."""
    secrets = credential.secrets()
    return exchange_client_build(
        exchange=credential.exchange, api_key=secrets.api_key, secret=secrets.secret, passphrase=secrets.passphrase, user_id=credential.user_id
    )
