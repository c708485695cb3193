"""The market-data port (see ``base.MarketData``); ``get_market_data()`` is the one place an implementation is picked."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from django.conf import settings

from signals.market_data.base import MarketData, MarketInfo
from signals.market_data.errors import (
    FinalMarketDataError,
    MarketDataError,
    RetryableMarketDataError,
    SymbolUnavailable,
)

__all__ = [
    "FinalMarketDataError",
    "MarketData",
    "MarketDataError",
    "MarketInfo",
    "RetryableMarketDataError",
    "SymbolUnavailable",
    "get_market_data",
    "market_data_override",
    "reset_market_data",
]

_lock = threading.Lock()
_instances: dict[tuple[str, str], MarketData] = {}
_override = threading.local()


@contextlib.contextmanager
def market_data_override(market_data: MarketData) -> Iterator[MarketData]:
    """Within the block, ``get_market_data()`` of this thread returns ``market_data`` (a replay on its own clock)."""
    previous = getattr(_override, "market_data", None)
    _override.market_data = market_data
    try:
        yield market_data
    finally:
        _override.market_data = previous


def get_market_data() -> MarketData:
    """``ReplayMarketData`` when ``settings.MARKET_DATA_SOURCE == "replay"``, else ``CcxtMarketData`` for
    ``settings.MARKET_DATA_EXCHANGE``. One instance per process and configuration (or this thread's override)."""
    overridden = getattr(_override, "market_data", None)
    if overridden is not None:
        return overridden
    source = settings.MARKET_DATA_SOURCE
    key = (source, settings.MARKET_DATA_EXCHANGE if source == "live" else str(settings.REPLAY_DATA_DIR))
    with _lock:
        instance = _instances.get(key)
        if instance is None:
            if source == "replay":
                from signals.market_data.replay import ReplayMarketData

                instance = ReplayMarketData.from_settings()
            elif source == "live":
                from signals.market_data.live import CcxtMarketData

                instance = CcxtMarketData(settings.MARKET_DATA_EXCHANGE)
            else:
                raise FinalMarketDataError(f"unknown MARKET_DATA_SOURCE {source!r}")
            _instances[key] = instance
        return instance


def reset_market_data() -> None:
    """Forget the cached instances (tests, settings changes)."""
    with _lock:
        _instances.clear()
