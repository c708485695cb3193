"""Receiving updates: long polling against the configured Bot API server, and webhook registration.

Telegram delivers a bot's updates one way at a time: to a webhook, or to one long poll. Its 409 answers name the
conflict — ``can't use getUpdates method while webhook is active``, ``terminated by setWebhook request``,
``terminated by other getUpdates request`` — and the poller turns each into a ``BridgeConflict`` with one clear
sentence (no traceback): a polling bridge never silently deletes a webhook that ``run_bridge --webhook`` registered.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass

from aiogram.exceptions import TelegramConflictError, TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.types import BotCommand
from django.conf import settings
from django.db import close_old_connections, connection

from analytics.services import heartbeat_record
from telegram_bridge.dispatch import UpdateDispatcher
from telegram_bridge.texts import COMMANDS
from telegram_bridge.transport import get_transport

logger = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "channel_post", "callback_query", "my_chat_member"]
HEARTBEAT_NAME = "bridge"
HEARTBEAT_SECONDS = 30.0


class BridgeConflict(Exception):
    """Another consumer of this bot's updates: a registered webhook, or a second polling bridge."""


SWITCH_TO_POLLING = "python manage.py run_bridge --delete-webhook"


def webhook_conflict_text(url: str = "") -> str:
    where = f"the webhook {url}" if url else "a webhook"
    return (
        f"Telegram delivers this bot's updates to {where} (registered with `run_bridge --webhook`), so the "
        f"polling bridge stops: both cannot run at once. Stop this service, or run `{SWITCH_TO_POLLING}` to "
        f"switch back to long polling."
    )


POLLER_CONFLICT_TEXT = (
    "Another process started polling this bot's updates (Telegram ended this long poll: "
    '"terminated by other getUpdates request"), so this polling bridge stops: run one bridge '
    "per bot token."
)


def webhook_url_registered() -> str:
    """The webhook URL Telegram delivers updates to, or "" in polling mode."""
    transport = get_transport()
    return transport.call(transport.bot.get_webhook_info()).url or ""


def _conflict(error: TelegramConflictError) -> BridgeConflict:
    if "other getUpdates request" in error.message:
        return BridgeConflict(POLLER_CONFLICT_TEXT)
    url = ""
    for attempt in range(3):  # the message is what matters; the URL is a courtesy, asked again if a call fails
        try:
            url = webhook_url_registered()
            break
        except Exception:
            time.sleep(0.2 * (attempt + 1))
    return BridgeConflict(webhook_conflict_text(url))


def bot_commands_set() -> None:
    """The command menu users see in their Telegram client."""
    transport = get_transport()
    menu = [BotCommand(command=name, description=summary[:256]) for name, (summary, _) in COMMANDS.items()]
    transport.call(transport.bot.set_my_commands(commands=menu))


def webhook_set(*, url: str) -> None:
    transport = get_transport()
    transport.call(
        transport.bot.set_webhook(
            url=url, secret_token=settings.TELEGRAM_WEBHOOK_SECRET, allowed_updates=ALLOWED_UPDATES
        )
    )


@dataclass
class PollingReport:
    handled: int = 0
    restarts: int = 0  # sessions rebuilt by the watchdog
    failures: int = 0


class Poller:
    """Long polling with a watchdog and a clean stop.

    Each getUpdates is awaited in short slices: when ``stop`` is set the in-flight request is cancelled at once
    (graceful shutdown does not wait for a 25 s long poll), and when no answer has come ``stall_seconds`` after the
    long-poll timeout the watchdog cancels it and rebuilds the HTTP session (a half-open TCP connection behind a NAT
    or a proxy otherwise hangs the bridge forever).

    Updates go to an ``UpdateDispatcher`` (telegram_bridge/dispatch.py): ``concurrency`` users at a time, each user's
    updates in order, each under the handler time limit. The offset sent with the next getUpdates confirms only the
    updates already started.
    """

    def __init__(
        self,
        *,
        timeout: int = 25,
        stall_seconds: float | None = None,
        stop: threading.Event | None = None,
        concurrency: int | None = None,
        time_limit: float | None = None,
        delete_webhook: bool = False,
    ) -> None:
        self.dispatcher = UpdateDispatcher(workers=concurrency, time_limit=time_limit)
        self.timeout = timeout
        self.delete_webhook = delete_webhook  # switch a webhook-mode bot back to polling (else: BridgeConflict)
        self.stall_seconds = stall_seconds if stall_seconds is not None else max(10.0, timeout * 0.5)
        self.stop = stop or threading.Event()
        self.report = PollingReport()
        self.offset: int | None = None
        self._last_beat = float("-inf")

    def _beat(self) -> None:
        """The bridge's heartbeat (analytics Heartbeat "bridge"), at most every HEARTBEAT_SECONDS: a getUpdates
        answered recently means the bridge is alive (``manage.py bridge_health`` and /admin read it)."""
        if time.monotonic() - self._last_beat < HEARTBEAT_SECONDS:
            return
        try:
            heartbeat_record(name=HEARTBEAT_NAME)
            self._last_beat = time.monotonic()
        except Exception as error:  # a database hiccup must not stop polling
            logger.warning("bridge heartbeat not recorded: %s", type(error).__name__)

    def _get_updates(self, transport):
        """The updates, or None when stopped or stalled (the caller decides what to do next)."""
        future = transport.submit(
            transport.bot.get_updates(
                offset=self.offset,
                timeout=self.timeout,
                allowed_updates=ALLOWED_UPDATES,
                request_timeout=int(self.timeout + self.stall_seconds + 5),
            )
        )
        deadline = time.monotonic() + self.timeout + self.stall_seconds
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                pass
            if self.stop.is_set():
                future.cancel()
                return None
            if time.monotonic() >= deadline:
                future.cancel()
                self.report.restarts += 1
                logger.warning(
                    "getUpdates stalled: no answer %.1f s after the long-poll timeout; restarting the "
                    "session (restart #%d)",
                    self.stall_seconds,
                    self.report.restarts,
                )
                transport.session_restart()
                return None

    def run(self, *, max_updates: int | None = None) -> PollingReport:
        """Poll until stopped (or ``max_updates``); raises ``BridgeConflict`` when a webhook is registered or
        another poller or a new webhook takes the updates over (handled updates are then not confirmed here: the
        confirming getUpdates would end the other poller's long poll; ``update_handle`` de-duplicates them)."""
        transport = get_transport()
        if self.delete_webhook:
            transport.call(transport.bot.delete_webhook(drop_pending_updates=False))
        else:
            url = webhook_url_registered()
            if url:
                raise BridgeConflict(webhook_conflict_text(url))
        while not self.stop.is_set():
            try:
                updates = self._get_updates(transport)
            except TelegramConflictError as error:
                raise _conflict(error) from None
            except TelegramRetryAfter as error:
                self.stop.wait(error.retry_after)
                continue
            except (TelegramNetworkError, TelegramServerError) as error:
                self.report.failures += 1
                logger.warning("getUpdates failed (%s); retrying", type(error).__name__)
                self.stop.wait(min(2 ** min(self.report.failures, 5), 30))
                continue
            if updates is None:
                continue
            self.report.failures = 0
            self._beat()
            if not connection.in_atomic_block:  # a long-lived process drops stale connections between batches
                close_old_connections()
            next_offset = self.offset
            for update in updates:
                next_offset = update.update_id + 1
                if self.dispatcher.submit(update.model_dump(mode="json", exclude_none=True, by_alias=True)):
                    self.report.handled += 1
                if max_updates and self.report.handled >= max_updates:
                    return self._finish(next_offset)
            self.offset = self.dispatcher.confirm_offset(next_offset=next_offset)
        return self._finish(self.offset)

    def _finish(self, next_offset: int | None) -> PollingReport:
        """Let the running handlers finish (each is bounded by the time limit), then confirm what was handled."""
        if not self.dispatcher.close(timeout=self.dispatcher.time_limit + 5):
            logger.warning(
                "stopping with updates still waiting; they are not confirmed, so they come again after the restart"
            )
        self.offset = self.dispatcher.confirm_offset(next_offset=next_offset)
        _confirm(self.offset)
        return self.report


def polling_run(
    *,
    timeout: int = 25,
    max_updates: int | None = None,
    stop: threading.Event | None = None,
    stall_seconds: float | None = None,
    concurrency: int = 1,
    delete_webhook: bool = False,
) -> int:
    """getUpdates in a loop, each update handed to ``update_handle`` (per user in order); returns how many were
    handled. In-process callers (the demo, tests) handle in their own thread by default; the bridge process
    (``run_bridge``) uses ``TELEGRAM_BRIDGE_CONCURRENCY``."""
    poller = Poller(
        timeout=timeout, stall_seconds=stall_seconds, stop=stop, concurrency=concurrency, delete_webhook=delete_webhook
    )
    return poller.run(max_updates=max_updates).handled


def _confirm(offset: int | None) -> None:
    """Tell the server which updates are handled (getUpdates confirms everything below ``offset``)."""
    if offset is None:
        return
    transport = get_transport()
    try:
        transport.call(
            transport.bot.get_updates(offset=offset, timeout=0, limit=1, allowed_updates=ALLOWED_UPDATES), timeout=15
        )
    except (
        TelegramNetworkError,
        TelegramServerError,
        TelegramRetryAfter,
        TelegramConflictError,
        concurrent.futures.TimeoutError,
    ):
        logger.warning("could not confirm updates below %s; they are de-duplicated on the next start", offset)
