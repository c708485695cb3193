"""Which exchange client a live account gets: picked in one place, from ``settings.LIVE_EXCHANGE_CLIENT``.

- ``"real"`` (default): ccxt for KuCoin Futures, OKX and MEXC (``CcxtExchangeClient``), the hand-written adapter
  for Bitunix (``BitunixClient``);
- any other value is the dotted path of a factory with the signature of ``exchange_client_real`` (resolved with
  Django's ``import_string``): tests and the demo name their stand-in this way, so production code never imports
  a test double.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from exchanges.base import ExchangeClient
from exchanges.bitunix import BitunixClient
from exchanges.capabilities import CAPABILITIES, capabilities
from exchanges.ccxt_client import CcxtExchangeClient
from exchanges.errors import FinalExchangeError

ClientFactory = Callable[..., ExchangeClient]


def exchange_client_real(
    *, exchange: str, api_key: str, secret: str, passphrase: str = "", user_id: int | None = None
) -> ExchangeClient:
    """The production adapter of ``exchange`` for these keys (no network until a call is made)."""
    if exchange not in CAPABILITIES:
        raise FinalExchangeError(f"unsupported exchange {exchange!r}", exchange=exchange)
    if not capabilities(exchange).via_ccxt:  # Bitunix: its own signed-HTTP client
        return BitunixClient(
            api_key=api_key,
            secret=secret,
            base_url=settings.BITUNIX_BASE_URL or "https://fapi.bitunix.com",
            timeout=float(settings.LIVE_HTTP_TIMEOUT_SECONDS),
        )
    return CcxtExchangeClient(exchange, api_key=api_key, secret=secret, passphrase=passphrase)


def exchange_client_factory() -> ClientFactory:
    """The factory named by ``settings.LIVE_EXCHANGE_CLIENT`` (``"real"`` or a dotted import path)."""
    value = settings.LIVE_EXCHANGE_CLIENT.strip() or "real"
    if value == "real":
        return exchange_client_real
    try:
        factory = import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"LIVE_EXCHANGE_CLIENT={value!r} is neither 'real' nor an importable factory path ({exc})"
        ) from None
    if not callable(factory):
        raise ImproperlyConfigured(f"LIVE_EXCHANGE_CLIENT={value!r} does not name a callable")
    return factory


def exchange_client_build(
    *, exchange: str, api_key: str, secret: str, passphrase: str = "", user_id: int | None = None
) -> ExchangeClient:
    """A client for raw keys (used by /connect before anything is stored)."""
    return exchange_client_factory()(
        exchange=exchange, api_key=api_key, secret=secret, passphrase=passphrase, user_id=user_id
    )


def exchange_client_for(credential) -> ExchangeClient:
    """The async client for a stored exchange credential (anything with ``exchange``, ``user_id`` and ``secrets()``
    returning ``api_key``/``secret``/``passphrase``); secrets are decrypted in memory only."""
    secrets = credential.secrets()
    return exchange_client_build(
        exchange=credential.exchange,
        api_key=secrets.api_key,
        secret=secrets.secret,
        passphrase=secrets.passphrase,
        user_id=credential.user_id,
    )
