"""The price cache shared by every worker: last prices live ``ttl`` seconds (30 s) in the Django cache.

With ``REDIS_URL`` set the default cache is Redis, so all web/worker processes share the entries, the hit/miss
counters and a short fetch lock (one process fetches a missing price, the others wait for it). Without Redis it is
the in-process LocMem cache. Inside one process a per-key lock keeps threads from fetching the same price at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.core.cache import BaseCache, caches

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 30
_LOCK_SECONDS = 10  # a fetch holding the shared lock longer than this is presumed dead
_WAIT_SECONDS = 5.0  # how long another process waits for the holder's value before fetching itself


@dataclass(frozen=True)
class PriceCacheStats:
    hits: int
    misses: int


class PriceCache:
    def __init__(self, *, cache: BaseCache | None = None, ttl: int = DEFAULT_TTL_SECONDS, prefix: str = "price"):
        self._cache = cache
        self.ttl = ttl
        self.prefix = prefix
        self._guard = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}

    @property
    def cache(self) -> BaseCache:
        """The given cache, else the default Django cache (resolved per call: settings may change in tests)."""
        return self._cache if self._cache is not None else caches["default"]

    # -- keys and counters ----------------------------------------------------------------------------------------
    def _value_key(self, key: str) -> str:
        return f"{self.prefix}:v:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}:lock:{key}"

    def _count(self, name: str) -> None:
        counter = f"{self.prefix}:stats:{name}"
        try:
            self.cache.incr(counter)
        except ValueError:  # missing: create it (add is atomic), then count
            self.cache.add(counter, 0, timeout=None)
            self.cache.incr(counter)

    def stats(self) -> PriceCacheStats:
        values = self.cache.get_many([f"{self.prefix}:stats:hits", f"{self.prefix}:stats:misses"])
        return PriceCacheStats(
            hits=int(values.get(f"{self.prefix}:stats:hits", 0)),
            misses=int(values.get(f"{self.prefix}:stats:misses", 0)),
        )

    def _cached(self, key: str) -> Decimal | None:
        raw = self.cache.get(self._value_key(key))
        return None if raw is None else Decimal(raw)

    # -- sync ------------------------------------------------------------------------------------------------------
    def get_or_fetch(self, key: str, fetch: Callable[[], Decimal]) -> Decimal:
        """The cached price for ``key``, else ``fetch()`` once (per key, across threads and processes) and cache it."""
        value = self._cached(key)
        if value is not None:
            self._count("hits")
            return value
        with self._guard:
            lock = self._thread_locks.setdefault(key, threading.Lock())
        with lock:
            value = self._cached(key)  # another thread filled it while we waited
            if value is not None:
                self._count("hits")
                return value
            value = self._fetch_across_processes(key, fetch)
        return value

    def _fetch_across_processes(self, key: str, fetch: Callable[[], Decimal]) -> Decimal:
        lock_key = self._lock_key(key)
        if not self.cache.add(lock_key, 1, timeout=_LOCK_SECONDS):
            deadline = time.monotonic() + _WAIT_SECONDS
            while time.monotonic() < deadline:  # another process is fetching: wait for its value
                time.sleep(0.05)
                value = self._cached(key)
                if value is not None:
                    self._count("hits")
                    return value
            logger.warning("price cache: lock holder for %s did not deliver; fetching ourselves", key)
        try:
            self._count("misses")
            value = Decimal(fetch())
            self.cache.set(self._value_key(key), str(value), timeout=self.ttl)
            return value
        finally:
            self.cache.delete(lock_key)


_default: PriceCache | None = None
_default_guard = threading.Lock()


def price_cache() -> PriceCache:
    """The process-wide price cache over the default Django cache (Redis when configured)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = PriceCache(ttl=DEFAULT_TTL_SECONDS)
        return _default
