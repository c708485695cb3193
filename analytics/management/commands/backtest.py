"""`python manage.py backtest --symbols BTC/USDT:USDT,ETH/USDT:USDT --days 90`

Runs a backtest in this process on the market data (the replay data under data/ by default), with a progress bar,
stores it as a BacktestRun (metrics + equity PNG, visible in the admin control panel) and prints the metrics.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analytics.backtesting import BacktestRequestError, backtest_params_clean
from analytics.models import BacktestRun
from analytics.services import backtest_run_execute

SHOWN_METRICS = ("trades", "win_rate", "profit_factor", "net_pnl", "return_pct", "max_drawdown_pct", "sharpe", "avg_r",
                 "range_start", "range_end")


class Command(BaseCommand):
    help = "Backtest the live strategy and exit rules on the market data; stores the result as a BacktestRun."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", required=True, help="Comma-separated ccxt symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT")
        parser.add_argument("--days", type=int, default=30, help="Days of 15m candles to test, ending at the data's end")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, CI)")

    def handle(self, *args, symbols: str, days: int, no_progress: bool, **options):
        try:
            params = backtest_params_clean({"symbols": symbols, "days": days})
        except BacktestRequestError as error:
            raise CommandError(str(error)) from None
        run = BacktestRun.objects.create(params=params)
        steps = len(params["symbols"]) + 2  # load each symbol, simulate, plot
        with tqdm(total=steps, desc=f"backtest #{run.pk}", unit="step", disable=no_progress, file=self.stderr) as bar:

            def progress(stage: str, done: int, total: int) -> None:
                bar.set_postfix_str(f"{stage} {done}/{total}")
                if stage == "load" or (stage == "simulate" and done == total) or stage == "plot":
                    bar.update(1)

            run = backtest_run_execute(run_id=run.pk, progress=progress)
        if run.status != BacktestRun.Status.SUCCEEDED:
            raise CommandError(f"backtest #{run.pk} failed: {run.error}")
        for key in SHOWN_METRICS:
            self.stdout.write(f"{key:>18}: {run.metrics.get(key)}")
        self.stdout.write(self.style.SUCCESS(
            f"backtest #{run.pk} done; equity chart: {run.equity_curve.path if run.equity_curve else 'none'}"
        ))
