"""Serve the local Telegram Bot API stand-in (tests, demo, offline development)."""

import asyncio
import contextlib

from django.core.management.base import BaseCommand

from testsupport.telegram_bot_api import LocalBotAPIServer


class Command(BaseCommand):
    help = "Run the local Telegram Bot API server: URLs {base}/bot{token}/{method}; GET /_local/sent lists messages."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)
        parser.add_argument("--rate-limit", type=float, default=0, help="messages/s before 429s (0: no limit)")
        parser.add_argument("--rate-burst", type=int, default=0, help="requests of burst tolerated (default N/10)")
        parser.add_argument("--block-chat", action="append", default=[], help="answer 403 for this chat id")

    def handle(self, *args, host, port, rate_limit, rate_burst, block_chat, **options):
        server = LocalBotAPIServer(rate_limit_per_second=rate_limit or None, rate_limit_burst=rate_burst or None)
        for chat_id in block_chat:
            server.block_chat(chat_id)

        async def serve():
            base = await server.start(host, port)
            self.stdout.write(f"Local Bot API server on {base} (set TELEGRAM_API_BASE={base})")
            await asyncio.Event().wait()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
