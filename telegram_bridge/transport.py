"""The TelegramTransport port: aiogram's ``Bot``, against Telegram or another Bot API server — chosen here only.

``settings.TELEGRAM_API_BASE`` set → ``AiohttpSession(api=TelegramAPIServer.from_base(base))`` (the bundled local
server for tests and the demo, or a self-hosted telegram-bot-api); empty → the real api.telegram.org.

Django code is synchronous, aiogram is asynchronous: the transport owns one event loop in a daemon thread per
process and runs coroutines there (``transport.call(...)`` from sync code, ``transport.submit(...)`` for futures).
The loop and the Bot are re-created after a fork (Celery prefork) and by ``transport_reset()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from django.conf import settings

T = TypeVar("T")

# A syntactically valid token used only against a local server when no real token is configured.
LOCAL_PLACEHOLDER_TOKEN = "123456789:LOCAL-bot-api-test-token"  # noqa: S105 — a placeholder


class TransportNotConfigured(RuntimeError):
    pass


def bot_create() -> Bot:
    """A Bot for the configured server (call inside the transport's loop: the session binds to it)."""
    base = settings.TELEGRAM_API_BASE
    token = settings.TELEGRAM_BOT_TOKEN or (LOCAL_PLACEHOLDER_TOKEN if base else "")
    if not token:
        raise TransportNotConfigured("TELEGRAM_BOT_TOKEN is not set (or set TELEGRAM_API_BASE to a local server)")
    session = AiohttpSession(api=TelegramAPIServer.from_base(base)) if base else AiohttpSession()
    return Bot(token=token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


class TelegramTransport:
    """One event loop thread and one Bot per process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="telegram-transport", daemon=True)
        self._thread.start()
        self.bot: Bot = self.call_factory(lambda: _async_value(bot_create))

    def call_factory(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = 120) -> T:
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 120) -> T:
        """Run a coroutine (typically ``transport.bot.<method>(...)``) on the transport loop and wait for it."""
        return self.submit(coroutine).result(timeout)

    def session_restart(self) -> None:
        """Drop the HTTP session (and its connections) and build a fresh Bot: the polling watchdog's remedy."""
        old = self.bot
        with contextlib.suppress(Exception):  # the old session may be wedged; closing it is best effort
            self.call(old.session.close(), timeout=10)
        self.bot = self.call_factory(lambda: _async_value(bot_create))

    def close(self) -> None:
        """Close the aiogram session and the limiter's Redis client, then the loop (no "Unclosed …" warnings)."""
        if self.pid != os.getpid():
            return
        with contextlib.suppress(Exception):  # closing is best effort
            limiter = getattr(self, "limiter", None)
            if limiter is not None:
                self.call(limiter.close(), timeout=5)
        with contextlib.suppress(Exception):
            self.call(self.bot.session.close(), timeout=10)
        with contextlib.suppress(Exception):
            self.call(_cancel_pending(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


async def _cancel_pending() -> None:
    """Cancel what still runs on the loop (an in-flight getUpdates) and let it unwind."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=3)


async def _async_value(function: Callable[[], T]) -> T:
    return function()


_transport: TelegramTransport | None = None
_transport_lock = threading.Lock()


def get_transport() -> TelegramTransport:
    global _transport
    with _transport_lock:
        if _transport is None or _transport.pid != os.getpid():
            _transport = TelegramTransport()
        return _transport


def transport_reset() -> None:
    """Forget the current transport (settings changed); the next ``get_transport()`` builds a new one."""
    global _transport
    with _transport_lock:
        old, _transport = _transport, None
    if old is not None:
        old.close()
