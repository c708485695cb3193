"""Where trading reads prices and the time: the market-data port (``signals.market_data``), injectable in tests.

The replay demo's clock is the market data's clock, so PnL periods, fills and funding follow the replay, not the
wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from signals.market_data import get_market_data

PriceSource = Callable[[str], Decimal]
Clock = Callable[[], datetime]


def market_data():
    return get_market_data()


def market_last_price(symbol: str) -> Decimal:
    """The next price a market order would fill at (the market data's last price, through the price cache)."""
    return market_data().last_price(symbol)


def market_now() -> datetime:
    """The replay clock in replay mode, the wall clock live."""
    return market_data().now()


def market_funding_rate(symbol: str) -> Decimal | None:
    """The market data's current (in replay: bundled) funding rate of ``symbol``; None when it has none or fails."""
    try:
        rate = market_data().funding_rate(symbol)
    except Exception:
        return None
    return None if rate is None else Decimal(rate)
