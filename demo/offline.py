"""What the offline demo (``make demo``) needs from the bridge: a Bot API server, users who talk to the bot, and
a transcript of what they received — all through the real aiogram client over HTTP.

    from demo.offline import demo_bot_api, demo_subscribers_start, demo_deliveries_flush

    with demo_bot_api() as bot_api:            # the local server in a thread, the bot transport pointed at it
        demo_subscribers_start(bot_api, users=[(900001, "alice"), (900002, "bob")],
                               commands={900002: ["/mute DOGE"]})
        ...                                      # the replay creates signals → signal.created → broadcast_signal
        report = demo_deliveries_flush()         # anything still waiting is sent now, in this process
        print("\\n\\n".join(bot_api.transcript()))

With a real ``TELEGRAM_BOT_TOKEN`` and no ``TELEGRAM_API_BASE``, ``demo_bot_api()`` yields None and the same code
talks to Telegram (there is then no transcript: the messages are in the users' Telegram apps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.conf import settings

from accounts.models import TelegramUser
from telegram_bridge.bridge import polling_run
from telegram_bridge.deliveries import SendReport
from telegram_bridge.rate_limit import Rate, SendRateLimiter
from telegram_bridge.sender import deliveries_send_pending
from telegram_bridge.transport import get_transport
from testsupport.telegram_bot_api import LocalBotAPIServer, running_local_bot_api


@contextlib.contextmanager
def demo_bot_api(*, fast_limits: bool = True, **server_options) -> Iterator[LocalBotAPIServer | None]:
    """The local Bot API server unless a real bot is configured (token set, no other API base).

    With ``fast_limits`` the sender's buckets allow 1000 msg/s and 50 per chat per second against the local server,
    so a replay that creates many signals is not slowed to Telegram's 1 msg/s per chat.
    """
    if settings.TELEGRAM_BOT_TOKEN and not settings.TELEGRAM_API_BASE:
        yield None
        return
    with running_local_bot_api(**server_options) as server:
        if fast_limits:
            get_transport().limiter = SendRateLimiter(
                redis_url="", global_rate=Rate(1000, 50), chat_rate=Rate(50, 20), group_rate=Rate(50, 20)
            )
        yield server


def demo_subscribers_start(
    server: LocalBotAPIServer, *, users: list[tuple[int, str]], commands: dict[int, list[str]] | None = None
) -> list[TelegramUser]:
    """Each user sends /start (then their extra ``commands``) to the bot; the bridge long-polls them in and answers.

    Returns the registered users. Their preferences are the defaults (DM alerts on, low and medium risk accepted).
    """
    count = 0
    for telegram_id, name in users:
        server.inject_message(user_id=telegram_id, text="/start", first_name=name.title(), username=name)
        count += 1
        for text in (commands or {}).get(telegram_id, []):
            server.inject_message(user_id=telegram_id, text=text, first_name=name.title(), username=name)
            count += 1
    handled = polling_run(timeout=1, max_updates=count) if count else 0
    if handled != count:
        raise RuntimeError(f"the bridge handled {handled} of {count} demo updates")
    return list(TelegramUser.objects.filter(telegram_id__in=[telegram_id for telegram_id, _ in users]))


def demo_deliveries_flush() -> SendReport:
    """Send every delivery still waiting (a broker-less demo has sent most of them already)."""
    return deliveries_send_pending()
