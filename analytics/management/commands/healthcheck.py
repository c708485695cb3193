"""`manage.py healthcheck <web|worker|beat|bridge>`: exit 0 when that process is doing its job, 1 otherwise.

Used by docker-compose healthchecks and the systemd health timers (deploy/); the checks live in
``analytics.watchdog.component_health``.
"""

from django.core.management.base import BaseCommand

from analytics.watchdog import COMPONENTS, component_health


class Command(BaseCommand):
    help = "Health of one process kind (web, worker, beat, bridge): exit status 0 healthy, 1 not."

    def add_arguments(self, parser):
        parser.add_argument("component", choices=COMPONENTS)

    def handle(self, *args, component: str, **options):
        health = component_health(component)
        self.stdout.write(f"{component}: {'ok' if health.ok else 'UNHEALTHY'} ({health.detail})")
        if not health.ok:
            raise SystemExit(1)
