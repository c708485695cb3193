"""Pytest fixtures of the stand-ins, loaded by the root conftest: the local Bot API server (one per test module, state cleared per test) and the bot transport pointed at it."""

from __future__ import annotations

import uuid

import pytest

from testsupport.telegram_bot_api import DEFAULT_TOKEN, LocalBotAPIServer


@pytest.fixture(scope="module")
def _local_server():
    server = LocalBotAPIServer()
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def bot_api(_local_server, settings):
    """A clean local server, the transport using it, fast limits (tests that measure limits set their own)."""
    from django.core.cache import cache

    # aiogram is imported by the tests that talk to the bot, not by every pytest process at start-up
    from telegram_bridge.rate_limit import Rate, SendRateLimiter
    from telegram_bridge.transport import get_transport, transport_reset

    server = _local_server
    server.reset()
    settings.TELEGRAM_API_BASE = server.base_url
    settings.TELEGRAM_BOT_TOKEN = DEFAULT_TOKEN
    settings.TELEGRAM_CHANNEL_ID = ""
    settings.ADMIN_TELEGRAM_IDS = []
    cache.clear()
    transport_reset()
    transport = get_transport()
    transport.limiter = SendRateLimiter(
        prefix=f"test:{uuid.uuid4().hex}",
        global_rate=Rate(2000, 50),
        chat_rate=Rate(1000, 50),
        group_rate=Rate(1000, 50),
    )
    yield server
    transport_reset()
