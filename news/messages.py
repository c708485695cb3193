"""Telegram HTML for what news/ sends: funding alerts (the signal card itself is rendered by the bot).

Everything that comes from outside (exchange ids, symbols) goes through ``html.escape``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape

HOURS_PER_YEAR = Decimal(24 * 365)


def annualised_pct(rate: Decimal, interval_hours: int) -> Decimal:
    """A per-interval funding rate as a simple (not compounded) yearly percentage."""
    return rate * HOURS_PER_YEAR / Decimal(interval_hours) * 100


def _pct(rate: Decimal, places: str = "0.0001") -> str:
    return f"{(rate * 100).quantize(Decimal(places)):+}%"


def funding_extreme_text(
    *, symbol: str, rates: list[tuple[str, Decimal, int]], period: datetime, threshold: Decimal
) -> str:
    """``rates``: (exchange, rate, interval_hours) for every exchange at or beyond the threshold."""
    lines = [f"⚠️ <b>Extreme funding</b> on <b>{escape(symbol)}</b>"]
    for exchange, rate, interval in rates:
        payer = "longs pay shorts" if rate > 0 else "shorts pay longs"
        yearly = annualised_pct(rate, interval).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
        lines.append(f"{escape(exchange)}: {_pct(rate)} per {interval} h (≈ {yearly:+}% a year), {payer}")
    lines.append(f"Threshold ±{(threshold * 100).normalize()}% · period {period:%Y-%m-%d %H:%M} UTC")
    return "\n".join(lines)


def funding_arbitrage_text(
    *,
    symbol: str,
    high: tuple[str, Decimal, int],
    low: tuple[str, Decimal, int],
    annualised_spread: Decimal,
    period: datetime,
) -> str:
    high_exchange, high_rate, high_interval = high
    low_exchange, low_rate, low_interval = low
    return "\n".join(
        [
            f"💱 <b>Funding arbitrage</b> on <b>{escape(symbol)}</b>",
            f"{escape(high_exchange)}: {_pct(high_rate)} per {high_interval} h · "
            f"{escape(low_exchange)}: {_pct(low_rate)} per {low_interval} h",
            f"Spread ≈ <b>{annualised_spread.quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}% a year</b>: short on {escape(high_exchange)}, "
            f"long on {escape(low_exchange)} (delta-neutral; fees, slippage and price risk not included)",
            f"Period {period:%Y-%m-%d %H:%M} UTC",
        ]
    )
