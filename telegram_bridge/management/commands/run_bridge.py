"""The bridge process: Telegram updates → ``telegram_bridge.services.update_handle``.

Long polling by default (with the stall watchdog of ``telegram_bridge.bridge.Poller``). ``--webhook URL`` registers
the webhook (with TELEGRAM_WEBHOOK_SECRET) and exits: the web process then receives updates at /telegram/webhook.
SIGTERM/SIGINT stop polling at once (the in-flight long poll is cancelled), confirm the handled updates and close
the aiogram session, so a restart neither loses nor repeats an update and leaves no "Unclosed client session".
"""

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from telegram_bridge.bridge import Poller, bot_commands_set, webhook_set
from telegram_bridge.transport import transport_reset

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Relay Telegram updates into Django (long polling), or register the webhook with --webhook URL."

    def add_arguments(self, parser):
        parser.add_argument("--webhook", default="", help="public HTTPS URL of /telegram/webhook to register")
        parser.add_argument("--timeout", type=int, default=25, help="long-polling timeout in seconds")
        parser.add_argument("--stall-seconds", type=float, default=None,
                            help="restart the HTTP session when getUpdates has not answered this long after the "
                                 "long-poll timeout (default: max(10, timeout/2))")
        parser.add_argument("--max-updates", type=int, default=0, help="stop after this many updates (tests)")

    def handle(self, *args, webhook, timeout, stall_seconds, max_updates, **options):
        try:
            bot_commands_set()
            if webhook:
                if not settings.TELEGRAM_WEBHOOK_SECRET:
                    raise CommandError("Set TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Za-z0-9_-) first.")
                webhook_set(url=webhook)
                self.stdout.write("Webhook registered; updates now arrive at the web process.")
                return
            self._poll(timeout=timeout, stall_seconds=stall_seconds, max_updates=max_updates)
        finally:
            transport_reset()  # closes the aiogram session, the limiter's Redis client and the event loop

    def _poll(self, *, timeout: int, stall_seconds: float | None, max_updates: int) -> None:
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
            report = Poller(timeout=timeout, stall_seconds=stall_seconds, stop=stop).run(max_updates=max_updates or None)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(f"Stopped after {report.handled} update(s) in {time.monotonic() - started:.0f} s "
                          f"({report.restarts} session restart(s))")
