"""Rows that make the operators' pages look as they do in real use: markets from a 0.1 to a 1e-7 tick (and one
without a known tick), prices on the tick grid but stored with all twelve decimals (65432.100000000000), quantities
on the step grid, money and percentages with long fractions, a finished backtest whose metrics are raw floats."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.tests.factories import TelegramUserFactory
from analytics.models import BacktestRun
from analytics.services import heartbeat_record
from signals.models import ScanRun, Signal
from signals.services import price_quantize
from signals.tests.factories import SignalFactory, SymbolFactory
from trading.models import Position
from trading.tests.factories import OrderFactory, PaperAccountFactory, PositionFactory

MARKETS = (  # symbol, tick size, a price as the engine's float leaves it (12 decimals stored)
    ("BTC/USDT:USDT", Decimal("0.1"), Decimal("65432.123456789012")),
    ("XRP/USDT:USDT", Decimal("0.0001"), Decimal("0.612345678901")),
    ("1000PEPE/USDT:USDT", Decimal("0.0000001"), Decimal("0.012345678912")),
    ("NXT/BTC", None, Decimal("0.000029600000")),
)

BACKTEST_METRICS = {
    "trades": 37,
    "wins": 15,
    "losses": 22,
    "win_rate": 0.40540540540540543,
    "profit_factor": 1.2345678901234567,
    "expectancy": 3.141592653589793,
    "avg_r": 0.123456789,
    "net_pnl": 116.23456789012345,
    "gross_pnl": 180.98765432109876,
    "fees": 60.123456789,
    "funding": -4.62962962962963,
    "return_pct": 1.1623456789012345,
    "max_drawdown": 321.9876543210987,
    "max_drawdown_pct": 3.1415926535,
    "sharpe": 0.8765432109876543,
    "sortino": 1.3456789012345678,
    "calmar": 0.37012345678,
    "cagr_pct": 14.87654321,
    "exposure_pct": 42.424242424242,
    "avg_holding_hours": 7.3333333333,
    "best_trade": 212.3456789012345,
    "worst_trade": -98.76543210987654,
    "data_problems": "none",
    "days": 30,
    "symbols": ["BTC/USDT:USDT", "XRP/USDT:USDT"],
    "range_start": "2024-01-01T00:00:00+00:00",
    "range_end": "2024-01-31T00:00:00+00:00",
    "per_symbol": [
        {
            "key": "BTC/USDT:USDT",
            "trades": 20,
            "win_rate": 0.45,
            "net_pnl": 150.12345678901,
            "avg_r": 0.2345678901,
            "profit_factor": 1.456789012345,
        },
        {
            "key": "XRP/USDT:USDT",
            "trades": 17,
            "win_rate": 0.35294117647058826,
            "net_pnl": -33.8888888888889,
            "avg_r": -0.0987654321,
            "profit_factor": 0.8765432109876,
        },
    ],
    "per_month": [
        {
            "key": "2024-01",
            "trades": 37,
            "win_rate": 0.40540540540540543,
            "net_pnl": 116.23456789012345,
            "avg_r": 0.123456789,
            "profit_factor": None,
        },
    ],
}


def operator_pages_data() -> dict:
    now = timezone.now()
    trader = TelegramUserFactory(username="a_rather_long_trader_username_2024", first_name="Alexandria-Josephine")
    PaperAccountFactory(user=trader, balance=Decimal("9842.53718291"), peak_equity=Decimal("10234.98765432"))
    signals = []
    for index, (name, tick, raw_price) in enumerate(MARKETS):
        symbol = SymbolFactory(symbol=name, base=name.split("/")[0], tick_size=tick, step_size=Decimal("0.001"))

        def level(value: Decimal, tick=tick) -> Decimal:  # as signal_create stores an engine price
            return price_quantize(value=value, tick_size=tick).quantize(Decimal("1e-12"))

        price = level(raw_price)
        for side, sign in (("long", 1), ("short", -1)):
            signal = SignalFactory(
                symbol=symbol,
                side=side,
                source=(Signal.Source.TECHNICAL, Signal.Source.NEWS, Signal.Source.FLOW)[index % 3],
                entry=price,
                stop=level(price * (1 - sign * Decimal("0.0241234"))),
                tp1=level(price * (1 + sign * Decimal("0.0241234"))),
                tp2=level(price * (1 + sign * Decimal("0.0483321"))),
                risk_level="medium",
                status=Signal.Status.CLOSED,
                outcome=Signal.Outcome.SL,
                outcome_pnl_pct=Decimal("-2.4137"),
                headline="A headline long enough to wrap in a narrow column " * 2,
            )
            signals.append(signal)
            position = PositionFactory(
                user=trader,
                signal=signal,
                symbol=symbol,
                side=side,
                status=Position.Status.CLOSED,
                quantity=Decimal("1234.568000000000"),
                remaining_quantity=Decimal("0"),
                entry_price=price,
                stop_price=signal.stop,
                initial_stop_price=signal.stop,
                tp1_price=signal.tp1,
                tp2_price=signal.tp2,
                realised_pnl=Decimal("-157.46283921"),
                fees=Decimal("21.37465123"),
                funding=Decimal("-0.35123456"),
                close_reason="stop",
                opened_at=now - timedelta(hours=5),
                closed_at=now,
            )
            OrderFactory(position=position, quantity=position.quantity, price=price, trigger_price=signal.stop)
    for minutes in (45, 30, 15):
        ScanRun.objects.create(
            scan_time=now - timedelta(minutes=minutes),
            source="replay",
            symbols_total=120,
            symbols_scanned=118,
            finished_at=now - timedelta(minutes=minutes - 1),
        )
    heartbeat_record(name="worker")
    backtest = BacktestRun.objects.create(
        status=BacktestRun.Status.SUCCEEDED,
        metrics=BACKTEST_METRICS,
        params={"symbols": ["BTC/USDT:USDT", "XRP/USDT:USDT"], "days": 30, "strategy": {"stop_atr_mult": 1.5}},
        started_at=now - timedelta(minutes=3),
        finished_at=now,
    )
    return {"trader": trader, "signals": signals, "backtest": backtest}
