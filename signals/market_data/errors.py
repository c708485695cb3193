"""Errors of the market-data port. Adapters map their library's exceptions (ccxt, …) onto these three."""

from __future__ import annotations


class MarketDataError(Exception):
    """Base class: market data could not be obtained."""


class RetryableMarketDataError(MarketDataError):
    """Transient: timeout, network trouble, rate limit, exchange maintenance. Retry later (with backoff)."""


class FinalMarketDataError(MarketDataError):
    """Retrying will not help: bad request, authentication, unsupported call."""


class SymbolUnavailable(FinalMarketDataError):
    """The market does not exist (any more) on the exchange: unknown, delisted or suspended."""
