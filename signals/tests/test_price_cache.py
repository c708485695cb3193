"""The shared 30 s price cache: a second request inside the TTL makes no exchange call (in-process and Redis)."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from signals.market_data.price_cache import DEFAULT_TTL_SECONDS, PriceCache

pytestmark = pytest.mark.usefixtures("isolated_signals_env")


class CountingExchange:
    def __init__(self, price: str = "1.2345", delay: float = 0.0):
        self.calls = 0
        self.price = Decimal(price)
        self.delay = delay
        self._lock = threading.Lock()

    def fetch(self) -> Decimal:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.price


def _locmem() -> LocMemCache:
    return LocMemCache(f"price-test-{uuid.uuid4()}", {})


def _redis(url: str) -> RedisCache:
    # each instance is its own client, like two worker processes sharing one Redis
    return RedisCache(url, {"KEY_PREFIX": "signals-test"})


def test_default_ttl_is_thirty_seconds():
    assert DEFAULT_TTL_SECONDS == 30
    assert PriceCache().ttl == 30


def test_second_request_inside_ttl_makes_no_exchange_call_in_process():
    cache = PriceCache(cache=_locmem(), prefix=f"p{uuid.uuid4().hex}")
    exchange = CountingExchange()
    assert cache.get_or_fetch("okx:XRP/USDT:USDT", exchange.fetch) == Decimal("1.2345")
    assert cache.get_or_fetch("okx:XRP/USDT:USDT", exchange.fetch) == Decimal("1.2345")
    assert exchange.calls == 1
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)


def test_expired_entry_is_fetched_again():
    cache = PriceCache(cache=_locmem(), ttl=1, prefix=f"p{uuid.uuid4().hex}")
    exchange = CountingExchange()
    cache.get_or_fetch("k", exchange.fetch)
    time.sleep(1.1)
    cache.get_or_fetch("k", exchange.fetch)
    assert exchange.calls == 2
    assert cache.stats().misses == 2


def test_concurrent_threads_fetch_once():
    cache = PriceCache(cache=_locmem(), prefix=f"p{uuid.uuid4().hex}")
    exchange = CountingExchange(delay=0.05)
    results: list[Decimal] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_fetch("k", exchange.fetch))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert exchange.calls == 1
    assert results == [Decimal("1.2345")] * 8
    assert cache.stats().hits == 7


@pytest.mark.redis
def test_second_request_inside_ttl_makes_no_exchange_call_across_workers_with_redis(redis_url):
    prefix = f"p{uuid.uuid4().hex}"
    worker_a = PriceCache(cache=_redis(redis_url), prefix=prefix)
    worker_b = PriceCache(cache=_redis(redis_url), prefix=prefix)
    exchange = CountingExchange("0.5123")
    try:
        assert worker_a.get_or_fetch("okx:XRP/USDT:USDT", exchange.fetch) == Decimal("0.5123")
        assert worker_b.get_or_fetch("okx:XRP/USDT:USDT", exchange.fetch) == Decimal("0.5123")
        assert worker_a.get_or_fetch("okx:XRP/USDT:USDT", exchange.fetch) == Decimal("0.5123")
        assert exchange.calls == 1
        # the counters are shared too: both workers see them
        assert worker_b.stats().hits == 2
        assert worker_a.stats().misses == 1
        # and the entry really expires on the server after the TTL
        ttl = worker_a.cache._cache.get_client().ttl(
            worker_a.cache.make_and_validate_key(f"{prefix}:v:okx:XRP/USDT:USDT")
        )
        assert 0 < ttl <= 30
    finally:
        worker_a.cache.delete_many([f"{prefix}:v:okx:XRP/USDT:USDT", f"{prefix}:stats:hits", f"{prefix}:stats:misses"])


@pytest.mark.redis
def test_concurrent_workers_with_redis_fetch_once(redis_url):
    prefix = f"p{uuid.uuid4().hex}"
    exchange = CountingExchange(delay=0.1)
    workers = [PriceCache(cache=_redis(redis_url), prefix=prefix) for _ in range(4)]
    threads = [threading.Thread(target=w.get_or_fetch, args=("k", exchange.fetch)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert exchange.calls == 1
    assert workers[0].stats().hits == 3
    workers[0].cache.delete_many([f"{prefix}:v:k", f"{prefix}:stats:hits", f"{prefix}:stats:misses"])
