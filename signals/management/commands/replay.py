"""``python manage.py replay``: run the scanner and the outcome tracker over the bundled candles, faster than real
time, printing each signal as a user would see it and the outcomes at the end. It walks a clock of its own
(``replay_run``): the clock that running web, worker, beat and bridge processes read is never moved or rewound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from signals.replay import replay_print_step, replay_run


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Replay the bundled candles through the scanner and the outcome tracker (MARKET_DATA_SOURCE=replay)."

    def add_arguments(self, parser):
        parser.add_argument("--start", help="ISO time (UTC), default: first warmed-up candle")
        parser.add_argument("--end", help="ISO time (UTC), default: end of the data")
        parser.add_argument("--step-minutes", type=int, default=15)
        parser.add_argument("--quiet", action="store_true", help="only the summary")

    def handle(self, *args, **options):
        if settings.MARKET_DATA_SOURCE != "replay":
            raise CommandError("MARKET_DATA_SOURCE must be 'replay' to run a replay")
        write = self.stdout.write
        report = replay_run(
            start=_moment(options["start"]),
            end=_moment(options["end"]),
            step=timedelta(minutes=options["step_minutes"]),
            on_step=None if options["quiet"] else replay_print_step(write),
        )
        write("")
        for line in report.summary_lines():
            write(line)
        if report.skipped_reasons:
            write("Most frequent skip reasons (symbol: reason → scans):")
            for reason, count in report.skipped_reasons.most_common(5):
                write(f"  {reason} → {count}")
