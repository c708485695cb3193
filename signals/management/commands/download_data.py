"""`python manage.py download_data --symbols BTC/USDT:USDT,ETH/USDT:USDT --days 90 [--exchange okx] [--out DIR]`

Downloads 5m candles and funding history through ccxt into an on-disk cache in the replay data format (see
``signals.market_data.download``), with a progress bar; reports gaps and duplicates per symbol. Then
``REPLAY_DATA_DIR=DIR`` makes the replay and the backtests use the downloaded data.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from signals.market_data.download import DAY_MS, TIMEFRAME_MS, DownloadError, exchange_create, market_data_download

MAX_DAYS = 3650


class Command(BaseCommand):
    help = "Download 5m candles + funding history via ccxt into a replay-format cache (for backtests and replays)."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", required=True, help="Comma-separated ccxt symbols, e.g. BTC/USDT:USDT")
        parser.add_argument("--days", type=int, default=90, help="Days of candles ending now")
        parser.add_argument("--exchange", default=None, help="ccxt exchange id (default: MARKET_DATA_EXCHANGE)")
        parser.add_argument("--out", default=None, help="Cache folder (default: var/market_data)")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, CI)")

    def exchange(self, exchange_id: str):
        """The ccxt client (a seam for tests, which replace it with a recorded stand-in)."""
        return exchange_create(exchange_id)

    def handle(
        self, *args, symbols: str, days: int, exchange: str | None, out: str | None, no_progress: bool, **options
    ):
        wanted = list(dict.fromkeys(s.strip() for s in symbols.split(",") if s.strip()))
        if not wanted:
            raise CommandError("Give one or more symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT.")
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}.")
        directory = Path(out) if out else Path(settings.BASE_DIR) / "var" / "market_data"
        exchange_id = exchange or settings.MARKET_DATA_EXCHANGE
        try:
            client = self.exchange(exchange_id)
        except DownloadError as error:
            raise CommandError(str(error)) from None
        expected = len(wanted) * days * DAY_MS // TIMEFRAME_MS
        with tqdm(
            total=expected, desc=f"download {exchange_id}", unit="candle", disable=no_progress, file=self.stderr
        ) as bar:
            seen: dict[str, int] = {}

            def progress(symbol: str, fetched: int) -> None:
                bar.set_postfix_str(symbol)
                bar.update(fetched - seen.get(symbol, 0))
                seen[symbol] = fetched

            try:
                reports = market_data_download(
                    exchange=client, symbols=wanted, days=days, directory=directory, progress=progress
                )
            except DownloadError as error:
                raise CommandError(str(error)) from None
            finally:
                close = getattr(client, "close", None)
                if callable(close):
                    close()
        for report in reports:
            write = self.stderr.write if report.error else self.stdout.write
            write(report.line())
        failed = [r.symbol for r in reports if r.error]
        self.stdout.write(f"cache: {directory} (use it with REPLAY_DATA_DIR={directory})")
        if failed:
            raise CommandError(f"{len(failed)} symbol(s) failed: {', '.join(failed)}")
        self.stdout.write(self.style.SUCCESS(f"downloaded {len(reports)} symbol(s)"))
