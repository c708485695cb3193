"""Adapters of the exchanges: one package for every way the project talks to an exchange.

- ``exchanges.base``: the ``ExchangeClient`` port of live trading (Decimal, base-asset quantities, client order ids)
  and its value types; ``exchanges.sync.SyncExchangeClient`` drives it from synchronous code;
- ``exchanges.ccxt_factory``: the one ccxt client factory (sync or async, swap or spot, with or without keys), used
  by trading, live market data, order flow, funding rates and candle downloads;
- ``exchanges.errors``: our few exception types, the one map from ccxt's exceptions, the retry helpers;
- ``exchanges.capabilities``: what each exchange can do and how it wants to be asked (Freqtrade's ``_ft_has``);
- ``exchanges.ccxt_client`` (OKX, KuCoin Futures, MEXC) and ``exchanges.bitunix`` (Bitunix, trading and funding):
  the adapters; ``exchanges.clients`` picks one for a live account (``settings.LIVE_EXCHANGE_CLIENT``).

An adapter layer: it imports no Django app (``django.conf.settings`` only). Its test doubles live in
``testsupport/exchanges``.
"""

from exchanges.base import ExchangeClient
from exchanges.clients import exchange_client_build, exchange_client_for
from exchanges.sync import SyncExchangeClient

__all__ = ["ExchangeClient", "SyncExchangeClient", "exchange_client_build", "exchange_client_for"]
