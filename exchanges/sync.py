"""Drive an async ExchangeClient from synchronous code (Celery tasks, services) on a private event loop.

Each call runs to completion on the loop before returning, so Django ORM work between calls happens with no loop
running (the ORM's async-safety check stays happy) and the client's HTTP session lives on one loop for its whole
life. Use as a context manager so the session is always closed.
"""

from __future__ import annotations

import asyncio

from exchanges.base import (
    Balance,
    ExchangeClient,
    ExchangePosition,
    KeyPermissions,
    MarketInfo,
    OrderRequest,
    OrderResult,
    TradeFill,
)


class SyncExchangeClient:
    def __init__(self, client: ExchangeClient):
        self.client = client
        self.exchange_id = client.exchange_id
        self._loop = asyncio.new_event_loop()

    def _run(self, coroutine):
        return self._loop.run_until_complete(coroutine)

    def __enter__(self) -> SyncExchangeClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.client.close())
        finally:
            self._loop.close()

    def fetch_balance(self, currency: str = "USDT") -> Balance:
        return self._run(self.client.fetch_balance(currency))

    def key_permissions(self) -> KeyPermissions | None:
        method = getattr(self.client, "key_permissions", None)
        return self._run(method()) if method is not None else None

    def market(self, symbol: str) -> MarketInfo:
        return self._run(self.client.market(symbol))

    def set_leverage(self, symbol: str, leverage: int, margin_mode: str = "isolated") -> None:
        return self._run(self.client.set_leverage(symbol, leverage, margin_mode))

    def create_order(self, request: OrderRequest) -> OrderResult:
        return self._run(self.client.create_order(request))

    def cancel_order(self, **kwargs) -> None:
        return self._run(self.client.cancel_order(**kwargs))

    def fetch_order(self, **kwargs) -> OrderResult | None:
        return self._run(self.client.fetch_order(**kwargs))

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return self._run(self.client.fetch_open_orders(symbol))

    def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]:
        return self._run(self.client.fetch_positions(symbols))

    def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeFill]:
        return self._run(self.client.fetch_my_trades(symbol, since_ms))
