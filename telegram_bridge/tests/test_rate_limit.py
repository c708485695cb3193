"""The GCRA token buckets: shared through real Redis by every limiter (worker), and the in-process fallback."""

import asyncio
import itertools
import time
import uuid

import pytest

from telegram_bridge.rate_limit import Rate, SendRateLimiter, is_group_chat


def _limiter(redis_url: str, prefix: str, **rates) -> SendRateLimiter:
    return SendRateLimiter(
        redis_url=redis_url,
        prefix=prefix,
        global_rate=rates.get("global_rate", Rate(50, 1)),
        chat_rate=rates.get("chat_rate", Rate(1, 1)),
        group_rate=rates.get("group_rate", Rate(20 / 60, 1)),
    )


async def _drain(limiters, chats, count):
    """Each limiter (a 'worker') sends ``count`` messages round-robin over ``chats``; returns the send times."""
    times = []

    async def worker(limiter, offset):
        for i in range(count):
            await limiter.wait_for_slot(chats[(i + offset) % len(chats)])
            times.append(time.monotonic())

    await asyncio.gather(*(worker(limiter, n) for n, limiter in enumerate(limiters)))
    for limiter in limiters:
        await limiter.close()
    return sorted(times)


@pytest.mark.redis
def test_two_workers_share_the_global_bucket_in_redis(redis_url):
    prefix = f"test:{uuid.uuid4().hex}"
    workers = [_limiter(redis_url, prefix, chat_rate=Rate(1000, 1)) for _ in range(2)]
    times = asyncio.run(_drain(workers, [str(i) for i in range(1000)], 25))
    elapsed = times[-1] - times[0]
    # 50 sends at 50/s overall: 49 intervals of 20 ms, whichever worker sends.
    assert 0.9 < elapsed < 1.3, elapsed
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.010


@pytest.mark.redis
def test_per_chat_and_group_limits_and_429_penalty(redis_url):
    prefix = f"test:{uuid.uuid4().hex}"

    async def scenario():
        limiter = _limiter(redis_url, prefix, global_rate=Rate(1000, 1), chat_rate=Rate(5, 1), group_rate=Rate(2, 1))
        started = time.monotonic()
        for _ in range(3):
            await limiter.wait_for_slot("42")  # private: 5/s → 2 intervals of 0.2 s
        private = time.monotonic() - started
        started = time.monotonic()
        for _ in range(3):
            await limiter.wait_for_slot("-100123")  # group: 2/s → 2 intervals of 0.5 s
        group = time.monotonic() - started
        await limiter.penalize("7", 0.6)  # Telegram said retry_after for chat 7
        started = time.monotonic()
        await limiter.wait_for_slot("7")
        penalty = time.monotonic() - started
        await limiter.close()
        return private, group, penalty

    private, group, penalty = asyncio.run(scenario())
    assert 0.35 < private < 0.6 and 0.9 < group < 1.2 and 0.55 < penalty < 0.8
    assert is_group_chat("-100123") and is_group_chat("@channel") and not is_group_chat("42")


def test_in_process_fallback_without_redis():
    limiter = SendRateLimiter(redis_url="", global_rate=Rate(40, 1), chat_rate=Rate(1000, 1), group_rate=Rate(1, 1))
    assert not limiter.shared
    times = asyncio.run(_drain([limiter], [str(i) for i in range(100)], 21))
    assert 0.45 < times[-1] - times[0] < 0.7
