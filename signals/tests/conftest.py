"""Fixtures of the signals tests: an isolated in-process cache per test, the replay market data on the bundled
data, and a recorder in place of the domain-event dispatcher (other apps' consumers are not under test here)."""

from __future__ import annotations

import uuid

import pytest

from signals.market_data import reset_market_data


@pytest.fixture
def isolated_signals_env(settings):
    """An in-process cache of its own, replay market data, fresh singletons (use with ``pytest.mark.usefixtures``;
    not autouse, so the other tests in this folder are unaffected)."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"signals-{uuid.uuid4()}"}
    }
    settings.MARKET_DATA_SOURCE = "replay"
    reset_market_data()
    import signals.market_data.price_cache as price_cache_module

    price_cache_module._default = None
    yield
    reset_market_data()


@pytest.fixture
def dispatched(monkeypatch) -> list[tuple[str, dict]]:
    """Every domain event the signals services dispatch, in order (nothing reaches other apps' tasks)."""
    calls: list[tuple[str, dict]] = []

    def record(event, payload):
        calls.append((event, dict(payload)))
        return []

    monkeypatch.setattr("signals.services.dispatch_now", record)
    return calls


@pytest.fixture
def replay_market_data():
    from signals.market_data import get_market_data

    market_data = get_market_data()
    market_data.reset_clock()
    return market_data
