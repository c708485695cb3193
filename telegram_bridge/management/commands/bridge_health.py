"""Health check of the bridge process (docker-compose / systemd): exit 0 when it polled recently, 1 otherwise.

In webhook mode there is no bridge process; check the web process instead.
"""

from django.core.management.base import BaseCommand, CommandError

from analytics.selectors import heartbeat_age_seconds
from telegram_bridge.bridge import HEARTBEAT_NAME


class Command(BaseCommand):
    help = "Exit 1 unless the bridge's getUpdates was answered within --max-age seconds."

    def add_arguments(self, parser):
        parser.add_argument("--max-age", type=float, default=120.0)

    def handle(self, *args, max_age, **options):
        age = heartbeat_age_seconds(name=HEARTBEAT_NAME)
        if age is None or age > max_age:
            raise CommandError(
                f"bridge unhealthy: last getUpdates answer {'never' if age is None else f'{age:.0f} s ago'}"
            )
        self.stdout.write(f"bridge healthy: last getUpdates answer {age:.0f} s ago")
