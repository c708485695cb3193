"""How signals, prices, money and percentages are shown to people: the signal card of ``manage.py replay`` and the
replay report, and the number formats of the admin and the control panel (prices at the market's precision, money
and percentages rounded)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django.utils.html import format_html

from signals.models import Signal, Symbol

NOTHING = "–"
SIGNIFICANT_DIGITS = 6  # a price of a market without a known tick size


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def decimals_of(step: Decimal | None) -> int | None:
    """Decimal places of a tick or step size (0.1 → 1, 0.00000010 → 7, 5 → 0); None when unknown."""
    step = _decimal(step)
    if not step:
        return None
    return max(0, -step.normalize().as_tuple().exponent)


def price_text(value: Any, tick_size: Decimal | None = None, *, reference: Any = None) -> str:
    """A price as the market quotes it: with its tick size's decimals (65432.1, 0.6123, 0.0123457). Without a tick
    size, six significant digits of ``reference`` (the entry, so a signal's levels share one precision) or of the
    value itself, trailing zeros dropped (0.0000296, 0.0000303141)."""
    number = _decimal(value)
    if number is None:
        return NOTHING
    places = decimals_of(tick_size)
    if places is None:
        scale = _decimal(reference) or number
        if not scale:
            return "0"
        places = max(0, SIGNIFICANT_DIGITS - 1 - scale.adjusted())
        text = f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


def symbol_short(symbol: str) -> str:
    """A perpetual's unified symbol without the settle currency when it is the quote: BTC/USDT:USDT → BTC/USDT."""
    pair, _, settle = symbol.partition(":")
    return pair if settle and pair.endswith(f"/{settle}") else symbol


def symbol_cell(symbol: Symbol) -> str:
    """A list cell: BTC/USDT for BTC/USDT:USDT in a narrow list column; the unified symbol in the tooltip."""
    return format_html('<span title="{}">{}</span>', symbol.symbol, symbol_short(symbol.symbol))


def two_lines(first: str, second: str) -> str:
    """A list cell of two short values one above the other (side and source, leg and type)."""
    return format_html("{}<br>{}", first, second)


def money_text(value: Any, places: int = 2) -> str:
    """Money rounded to cents with thousands separators: 9,842.54, -157.46."""
    number = _decimal(value)
    if number is None:
        return NOTHING
    return f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):,.{places}f}"


def percent_text(value: Any, places: int = 2, *, fraction: bool = False, signed: bool = False) -> str:
    """A percentage: 2.41 → "2.41%"; ``fraction=True`` reads 0.405 as 40.5 %."""
    number = _decimal(value)
    if number is None:
        return NOTHING
    if fraction:
        number *= 100
    return f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):{'+' if signed else ''}.{places}f}%"


def ratio_text(value: Any, places: int = 2) -> str:
    """A plain ratio (Sharpe, profit factor, R multiple) to two decimals; "∞" for an unbounded one."""
    if value in ("inf", float("inf")):
        return "∞"
    number = _decimal(value)
    if number is None:
        return NOTHING
    return f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):.{places}f}"


_CHECK_LABELS = {"trend": "1h trend", "volume": "1h volume", "momentum": "1h momentum", "structure": "1h structure"}


def _pct(level, entry) -> str:
    return f"{100 * (level - entry) / entry:+.2f}%"


def signal_card(signal: Signal) -> str:
    """Multi-line card: symbol, side, entry, stop, targets, risk, checks passed."""
    checks = ", ".join(_CHECK_LABELS.get(name, name) for name in signal.confirmations) or "none"
    entry = signal.entry.normalize()
    return "\n".join(
        [
            f"{'🟢 LONG' if signal.side == 'long' else '🔴 SHORT'} {signal.symbol.symbol}  ({signal.timeframe}, "
            f"{signal.source}, {signal.created_at:%Y-%m-%d %H:%M} UTC)",
            f"  entry {entry}",
            f"  stop  {signal.stop.normalize()}  ({_pct(signal.stop, signal.entry)})",
            f"  TP1   {signal.tp1.normalize()}  ({_pct(signal.tp1, signal.entry)})",
            f"  TP2   {signal.tp2.normalize()}  ({_pct(signal.tp2, signal.entry)})",
            f"  risk  {signal.risk_level}   checks passed ({len(signal.confirmations)}/4): {checks}",
        ]
    )


def signal_outcome_line(signal: Signal) -> str:
    if signal.status == Signal.Status.OPEN:
        state = "open" + (" (TP1 hit)" if signal.tp1_hit_at else "")
        return f"{signal.symbol.symbol:<16} {signal.side:<5} {signal.created_at:%Y-%m-%d %H:%M}  {state}"
    return (
        f"{signal.symbol.symbol:<16} {signal.side:<5} {signal.created_at:%Y-%m-%d %H:%M}  "
        f"{signal.outcome:<8} {signal.outcome_pnl_pct:+.2f}%  closed {signal.closed_at:%Y-%m-%d %H:%M}"
    )
