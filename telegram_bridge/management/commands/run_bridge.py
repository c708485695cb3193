"""The bridge process: Telegram updates → ``telegram_bridge.services.update_handle``.

Long polling by default. ``--webhook URL`` registers the webhook (with TELEGRAM_WEBHOOK_SECRET) and exits: the web
process then receives updates at /telegram/webhook.
"""

import logging
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from telegram_bridge.bridge import bot_commands_set, polling_run, webhook_set

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Relay Telegram updates into Django (long polling), or register the webhook with --webhook URL."

    def add_arguments(self, parser):
        parser.add_argument("--webhook", default="", help="public HTTPS URL of /telegram/webhook to register")
        parser.add_argument("--timeout", type=int, default=25, help="long-polling timeout in seconds")
        parser.add_argument("--max-updates", type=int, default=0, help="stop after this many updates (tests)")

    def handle(self, *args, webhook, timeout, max_updates, **options):
        bot_commands_set()
        if webhook:
            if not settings.TELEGRAM_WEBHOOK_SECRET:
                raise CommandError("Set TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Za-z0-9_-) first.")
            webhook_set(url=webhook)
            self.stdout.write("Webhook registered; updates now arrive at the web process.")
            return
        self.stdout.write(f"Long polling {'Telegram' if not settings.TELEGRAM_API_BASE else settings.TELEGRAM_API_BASE}")
        started = time.monotonic()
        handled = polling_run(timeout=timeout, max_updates=max_updates or None)
        self.stdout.write(f"Stopped after {handled} update(s) in {time.monotonic() - started:.0f} s")
