"""Open-loop HTTP load on loopback: requests start on a fixed schedule (``rate`` per second) whether or not earlier
ones have answered, so a slow server shows up as latency instead of silently lowering the rate.

The mix is the platform's inbound traffic: Telegram bot updates posted to the webhook (``/telegram/webhook``, secret
header) and payment webhooks (Helius, ``/api/webhooks/helius/``, Authorization token), every request unique (new
update ids, new transaction signatures) so nothing is answered from a de-duplication shortcut. Used by
config/tests/test_load.py (short) and benchmarks/bench_load.py (30 s).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field

import httpx

from accounts.solana_pay import b58encode

TELEGRAM_SECRET = "load-test-webhook-secret"
HELIUS_TOKEN = "load-test-helius-token"
SERVER_ENV = {"TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET, "HELIUS_AUTH_TOKEN": HELIUS_TOKEN}


@dataclass
class LoadResult:
    name: str
    rate: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    run: int = 0  # in every update id (run * 10_000_000 + n) and transaction signature of this run

    @property
    def bot_update_ids(self) -> range:
        """The update ids a mixed or bot run posted (every even request of a mixed run is a bot update)."""
        count = self.requests if self.name == "bot" else (self.requests + 1) // 2
        return range(self.run * 10_000_000, self.run * 10_000_000 + count)

    @property
    def webhook_signature_prefix(self) -> str:
        return _signature(self.run, 0)[:SIGNATURE_PREFIX_CHARS]

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + len(self.errors)

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]

    @property
    def achieved_rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        mean = statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")
        return (
            f"{self.name}: {self.requests} requests in {self.elapsed:.1f} s ({self.achieved_rate:.0f}/s, target "
            f"{self.rate:.0f}/s), errors {len(self.errors)}, latency ms mean {mean:.1f} p50 "
            f"{self.percentile(50):.1f} p95 {self.percentile(95):.1f} p99 {self.percentile(99):.1f} "
            f"max {max(self.latencies_ms, default=float('nan')):.1f}"
        )


_last_run = [0]


def _next_run() -> int:
    """A run number of its own for every run (ids never collide, even two runs in the same second)."""
    run = max(int(time.time()) % 100_000, _last_run[0] + 1)
    _last_run[0] = run
    return run


def _bot_update(n: int, *, run: int) -> tuple[str, dict, bytes]:
    user_id = 900_000_000 + run * 1000 + n % 50  # 50 chatting users
    update_id = run * 10_000_000 + n
    body = {
        "update_id": update_id,
        "message": {
            "message_id": n + 1,
            "date": int(time.time()),
            "text": "/help",
            "from": {"id": user_id, "is_bot": False, "first_name": "Load", "username": f"load{user_id}"},
            "chat": {"id": user_id, "type": "private"},
        },
    }
    return "/telegram/webhook", {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}, json.dumps(body).encode()


# A load-test transaction signature: base58 of 64 bytes (as Helius sends). Its leading bytes name the run and n sits
# 20 bytes lower, so the first 24 characters (a 2^375 unit) change with the run (2^424) and never with n (< 2^264).
SIGNATURE_PREFIX_CHARS = 24


def _signature(run: int, n: int) -> str:
    return b58encode(b"LOADSIG" + run.to_bytes(4, "big") + bytes(20) + n.to_bytes(4, "big") + bytes(29))


def _payment_webhook(n: int, *, run: int) -> tuple[str, dict, bytes]:
    body = [{"signature": _signature(run, n), "type": "TRANSFER", "nativeTransfers": [], "tokenTransfers": []}]
    return "/api/webhooks/helius/", {"Authorization": HELIUS_TOKEN}, json.dumps(body).encode()


def _healthz(n: int, *, run: int) -> tuple[str, dict, bytes | None]:
    return "/healthz", {}, None


async def _run(base_url: str, *, rate: float, seconds: float, make, name: str) -> LoadResult:
    # aiohttp, not httpx: httpx's connection pool costs the client milliseconds per request once a few dozen are in
    # flight, so a slightly slow answer snowballs into seconds of queueing inside the load generator itself.
    import aiohttp

    run = _next_run()
    result = LoadResult(name=name, rate=rate, seconds=seconds, run=run)
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=200, limit_per_host=200, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector, timeout=timeout) as client:

        async def one(n: int) -> None:
            path, headers, body = make(n, run=run)
            started = time.perf_counter()
            try:
                if body is None:
                    request = client.get(path, headers=headers)
                else:
                    request = client.post(path, headers={**headers, "Content-Type": "application/json"}, data=body)
                async with request as response:
                    text = await response.text()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                result.errors.append(f"{path}: {type(exc).__name__}")
                return
            if status >= 300:
                result.errors.append(f"{path}: HTTP {status} {text[:200]}")
            else:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)

        t0 = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - t0
    return result


def _mixed(n: int, *, run: int):
    return (_bot_update if n % 2 == 0 else _payment_webhook)(n // 2, run=run)


def run_load(base_url: str, *, rate: float = 200, seconds: float = 30, kind: str = "mixed") -> LoadResult:
    make = {"mixed": _mixed, "healthz": _healthz, "bot": _bot_update, "webhook": _payment_webhook}[kind]
    return asyncio.run(_run(base_url, rate=rate, seconds=seconds, make=make, name=kind))


def warm_up(base_url: str, *, requests: int = 40, rate: float = 0, seconds: float = 0) -> LoadResult | None:
    """A few requests of each kind one by one (first connections, cache-cold paths), then optionally ``seconds`` of
    the mixed load at ``rate``, not measured: every worker process and thread of the server opens its database and
    broker connections (a server in production has long done so). Returns that run (its posts are stored too)."""
    run = _next_run()
    for n in itertools.islice(itertools.count(), requests):
        path, headers, body = _mixed(n, run=run)
        httpx.post(
            f"{base_url}{path}", headers={**headers, "Content-Type": "application/json"}, content=body, timeout=30
        ).raise_for_status()
    return run_load(base_url, rate=rate, seconds=seconds, kind="mixed") if rate and seconds else None
