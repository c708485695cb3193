"""The bridge process: Telegram updates → ``telegram_bridge.services.update_handle``.

Long polling by default (with the stall watchdog of ``telegram_bridge.bridge.Poller``). ``--webhook URL`` registers
the webhook (with TELEGRAM_WEBHOOK_SECRET) and exits: the web process then receives updates at /telegram/webhook.
SIGTERM/SIGINT stop polling at once (the in-flight long poll is cancelled), confirm the handled updates and close
the aiogram session, so a restart neither loses nor repeats an update and leaves no "Unclosed client session".

Telegram serves one consumer at a time. A polling bridge started while a webhook is registered, or running when
``--webhook`` registers one or when a second poller starts, stops with one sentence saying why and what to do, and
exit status 3 (``CONFLICT_EXIT_STATUS``; the systemd unit does not restart on it). ``--delete-webhook`` switches a
webhook-mode bot back to polling.
"""

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.selectors import heartbeat_age_seconds
from telegram_bridge.bridge import (
    HEARTBEAT_NAME,
    HEARTBEAT_SECONDS,
    SWITCH_TO_POLLING,
    BridgeConflict,
    Poller,
    bot_commands_set,
    webhook_set,
)
from telegram_bridge.transport import transport_reset

logger = logging.getLogger(__name__)
CONFLICT_EXIT_STATUS = 3


class Command(BaseCommand):
    help = "Relay Telegram updates into Django (long polling), or register the webhook with --webhook URL."

    def add_arguments(self, parser):
        parser.add_argument("--webhook", default="", help="public HTTPS URL of /telegram/webhook to register")
        parser.add_argument("--timeout", type=int, default=25, help="long-polling timeout in seconds")
        parser.add_argument(
            "--stall-seconds",
            type=float,
            default=None,
            help="restart the HTTP session when getUpdates has not answered this long after the "
            "long-poll timeout (default: max(10, timeout/2))",
        )
        parser.add_argument("--max-updates", type=int, default=0, help="stop after this many updates (tests)")
        parser.add_argument(
            "--delete-webhook",
            action="store_true",
            help="delete a registered webhook first (switch back from webhook mode to polling)",
        )

    def handle(self, *args, webhook, timeout, stall_seconds, max_updates, delete_webhook, **options):
        try:
            if webhook:
                self._register_webhook(webhook)
                return
            bot_commands_set()
            self._poll(
                timeout=timeout, stall_seconds=stall_seconds, max_updates=max_updates, delete_webhook=delete_webhook
            )
        except BridgeConflict as conflict:
            raise CommandError(str(conflict), returncode=CONFLICT_EXIT_STATUS) from None
        finally:
            transport_reset()  # closes the aiogram session, the limiter's Redis client and the event loop

    def _register_webhook(self, url: str) -> None:
        if not settings.TELEGRAM_WEBHOOK_SECRET:
            raise CommandError("Set TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Za-z0-9_-) first.")
        bot_commands_set()
        webhook_set(url=url)
        self.stdout.write("Webhook registered; updates now arrive at the web process.")
        try:
            age = heartbeat_age_seconds(name=HEARTBEAT_NAME)
        except Exception:  # no database here: nothing to tell about a poller
            age = None
        if age is not None and age < 4 * HEARTBEAT_SECONDS:
            self.stdout.write(
                f"A polling bridge was active {age:.0f} s ago: Telegram has just ended its long poll and it stops "
                f"(exit status {CONFLICT_EXIT_STATUS}). Disable its service so it is not started again "
                f"(systemctl disable --now perps-bridge, or docker compose stop bridge); `{SWITCH_TO_POLLING}` "
                f"switches back to polling."
            )

    def _poll(self, *, timeout: int, stall_seconds: float | None, max_updates: int, delete_webhook: bool) -> None:
        stop = threading.Event()

        def request_stop(signum, frame):
            logger.info("signal %s: stopping the bridge", signum)
            stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        server = settings.TELEGRAM_API_BASE or "Telegram"
        self.stdout.write(f"Long polling {server}", ending="\n")
        self.stdout.flush()
        started = time.monotonic()
        try:
            report = Poller(timeout=timeout, stall_seconds=stall_seconds, stop=stop, delete_webhook=delete_webhook).run(
                max_updates=max_updates or None
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(
            f"Stopped after {report.handled} update(s) in {time.monotonic() - started:.0f} s "
            f"({report.restarts} session restart(s))"
        )
