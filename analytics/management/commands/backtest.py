"""`python manage.py backtest --symbols BTC/USDT:USDT,ETH/USDT:USDT --days 90`

Runs a backtest in this process on the market data (the replay data under data/ by default, or a folder filled by
`manage.py download_data` through REPLAY_DATA_DIR), with a progress bar, stores it as a BacktestRun (metrics + equity
PNG, visible in the admin control panel) and prints the metrics.

`--sweep "stop_atr_mult=1,1.5,2;ema_fast=7,9" --rank profit_factor --processes 2` instead runs the grid in worker
processes and prints the combinations ranked by that metric (nothing is stored).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analytics.backtesting import (
    BacktestRequestError,
    backtest_params_clean,
    backtest_sweep_perform,
    sweep_grid_parse,
)
from analytics.models import BacktestRun
from analytics.services import backtest_run_execute

SHOWN_METRICS = (
    "trades",
    "win_rate",
    "profit_factor",
    "net_pnl",
    "return_pct",
    "max_drawdown_pct",
    "sharpe",
    "avg_r",
    "range_start",
    "range_end",
)


class Command(BaseCommand):
    help = "Backtest the live strategy and exit rules on the market data; stores the result as a BacktestRun."

    def add_arguments(self, parser):
        parser.add_argument(
            "--symbols", required=True, help="Comma-separated ccxt symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT"
        )
        parser.add_argument(
            "--days", type=int, default=30, help="Days of 15m candles to test, ending at the data's end"
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, CI)")
        parser.add_argument(
            "--sweep",
            default="",
            help='Parameter grid, e.g. "stop_atr_mult=1,1.5,2;ema_fast=7,9" '
            "(StrategyParams/BacktestConfig fields, exit.<ExitRules field>)",
        )
        parser.add_argument("--rank", default="profit_factor", help="Metric ranking the sweep (e.g. sharpe, net_pnl)")
        parser.add_argument("--processes", type=int, default=2, help="Worker processes for the sweep")

    def handle(
        self, *args, symbols: str, days: int, no_progress: bool, sweep: str, rank: str, processes: int, **options
    ):
        try:
            params = backtest_params_clean({"symbols": symbols, "days": days})
        except BacktestRequestError as error:
            raise CommandError(str(error)) from None
        if sweep:
            return self.sweep(params, sweep, rank, processes)
        run = BacktestRun.objects.create(params=params)
        steps = 2 * len(params["symbols"]) + 1  # load each symbol, simulate each symbol, plot
        with tqdm(total=steps, desc=f"backtest #{run.pk}", unit="step", disable=no_progress, file=self.stderr) as bar:

            def progress(stage: str, done: int, total: int) -> None:
                bar.set_postfix_str(f"{stage} {done}/{total}")
                if done > 0:
                    bar.update(1)

            run = backtest_run_execute(run_id=run.pk, progress=progress)
        if run.status != BacktestRun.Status.SUCCEEDED:
            raise CommandError(f"backtest #{run.pk} failed: {run.error}")
        for key in SHOWN_METRICS:
            self.stdout.write(f"{key:>18}: {run.metrics.get(key)}")
        self.stdout.write(
            self.style.SUCCESS(
                f"backtest #{run.pk} done; equity chart: {run.equity_curve.path if run.equity_curve else 'none'}"
            )
        )

    def sweep(self, params: dict, grid_text: str, rank: str, processes: int) -> None:
        try:
            grid = sweep_grid_parse(grid_text)
            rows = backtest_sweep_perform(params=params, grid=grid, metric=rank, processes=max(1, processes))
        except BacktestRequestError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{'#':>3}  {rank:>16}  {'trades':>6}  {'net_pnl':>10}  {'max_dd_%':>8}  parameters")
        for number, row in enumerate(rows, start=1):
            combo = ", ".join(f"{k}={v}" for k, v in row.params.items())
            if row.error:
                self.stdout.write(f"{number:>3}  {'invalid':>16}  {'':>6}  {'':>10}  {'':>8}  {combo}: {row.error}")
                continue
            m = row.metrics
            value = m.get(rank)
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            self.stdout.write(
                f"{number:>3}  {shown:>16}  {m['trades']:>6}  {m['net_pnl']:>10.2f}  {m['max_drawdown_pct']:>8.2f}  {combo}"
            )
