"""Telegram send limits as token buckets shared by every worker (Redis + Lua), with an in-process fallback.

Each send reserves a slot in two buckets at once — the global one (~30 msg/s) and the chat's own (1 msg/s for a
private chat, 20 msg/min for a group or channel) — using the generic cell rate algorithm (GCRA): a bucket is one
number, its "theoretical arrival time", so a reservation is a single atomic script call that returns how long to
sleep before sending. No polling, fair order, and all workers draw from the same buckets because the script runs
inside Redis with Redis' own clock. A 429's retry_after pushes the chat's bucket past the deadline for everyone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from django.conf import settings

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local g_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local c_tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local g_int, g_tol = tonumber(ARGV[1]), tonumber(ARGV[2])
local c_int, c_tol = tonumber(ARGV[3]), tonumber(ARGV[4])
local start = math.max(now, g_tat - g_tol, c_tat - c_tol)
local wait = start - now
if wait > tonumber(ARGV[5]) then
  return {'0', tostring(wait)}
end
local new_g = math.max(g_tat, start) + g_int
local new_c = math.max(c_tat, start) + c_int
redis.call('SET', KEYS[1], string.format('%.6f', new_g), 'PX', math.ceil((new_g - now + 60) * 1000))
redis.call('SET', KEYS[2], string.format('%.6f', new_c), 'PX', math.ceil((new_c - now + 60) * 1000))
return {'1', tostring(wait)}
"""

_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local c_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new_c = math.max(c_tat, now + tonumber(ARGV[1]) + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.6f', new_c), 'PX', math.ceil((new_c - now + 60) * 1000))
return 1
"""


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int = 1

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        return max(self.burst - 1, 0) * self.interval


def is_group_chat(chat_id: str) -> bool:
    """Groups, supergroups and channels have negative ids (or are addressed as @username)."""
    return chat_id.startswith("-") or chat_id.startswith("@")


class SendRateLimiter:
    """Reserve a send slot: ``await limiter.wait_for_slot(chat_id)`` sleeps exactly as long as the buckets require."""

    MAX_RESERVATION_SECONDS = 30.0

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        prefix: str = "tg:rl",
        global_rate: Rate | None = None,
        chat_rate: Rate | None = None,
        group_rate: Rate | None = None,
    ) -> None:
        self.prefix = prefix
        self.global_rate = global_rate or Rate(settings.TELEGRAM_RATE_GLOBAL_PER_SECOND, 1)
        self.chat_rate = chat_rate or Rate(settings.TELEGRAM_RATE_CHAT_PER_SECOND, 3)
        self.group_rate = group_rate or Rate(settings.TELEGRAM_RATE_GROUP_PER_MINUTE / 60.0, 3)
        self.redis_url = settings.REDIS_URL if redis_url is None else redis_url
        self._redis = None
        self._reserve_script = self._penalize_script = None
        self._local_tat: dict[str, float] = {}
        self._local_lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return bool(self.redis_url)

    def _client(self):
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.redis_url)
            self._reserve_script = self._redis.register_script(_RESERVE)
            self._penalize_script = self._redis.register_script(_PENALIZE)
        return self._redis

    def _chat_rate(self, chat_id: str) -> Rate:
        return self.group_rate if is_group_chat(chat_id) else self.chat_rate

    async def reserve(self, chat_id: str) -> tuple[bool, float]:
        """(reserved, seconds to wait). Not reserved when the wait would exceed MAX_RESERVATION_SECONDS."""
        chat_rate = self._chat_rate(chat_id)
        if self.shared:
            self._client()
            reserved, wait = await self._reserve_script(
                keys=[f"{self.prefix}:g", f"{self.prefix}:c:{chat_id}"],
                args=[
                    self.global_rate.interval,
                    self.global_rate.tolerance,
                    chat_rate.interval,
                    chat_rate.tolerance,
                    self.MAX_RESERVATION_SECONDS,
                ],
            )
            return reserved in (b"1", "1"), max(float(wait), 0.0)
        with self._local_lock:
            now = time.monotonic()
            g_tat, c_tat = self._local_tat.get("g", 0.0), self._local_tat.get(chat_id, 0.0)
            start = max(now, g_tat - self.global_rate.tolerance, c_tat - chat_rate.tolerance)
            if start - now > self.MAX_RESERVATION_SECONDS:
                return False, start - now
            self._local_tat["g"] = max(g_tat, start) + self.global_rate.interval
            self._local_tat[chat_id] = max(c_tat, start) + chat_rate.interval
            return True, start - now

    async def wait_for_slot(self, chat_id: str) -> float:
        """Sleep until this chat may receive one message; returns the seconds waited."""
        waited = 0.0
        while True:
            reserved, wait = await self.reserve(chat_id)
            if reserved:
                if wait > 0:
                    await asyncio.sleep(wait)
                return waited + wait
            await asyncio.sleep(min(wait, self.MAX_RESERVATION_SECONDS))
            waited += min(wait, self.MAX_RESERVATION_SECONDS)

    async def penalize(self, chat_id: str, seconds: float) -> None:
        """Telegram said "retry after ``seconds``": nobody sends to this chat before then."""
        chat_rate = self._chat_rate(chat_id)
        if self.shared:
            self._client()
            await self._penalize_script(keys=[f"{self.prefix}:c:{chat_id}"], args=[seconds, chat_rate.tolerance])
            return
        with self._local_lock:
            now = time.monotonic()
            self._local_tat[chat_id] = max(self._local_tat.get(chat_id, 0.0), now + seconds + chat_rate.tolerance)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
