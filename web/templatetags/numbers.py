"""Numbers for people in the operators' pages: ``{% load numbers %}`` then ``{{ v|money }}``, ``{{ v|percent }}``,
``{{ fraction|percent_of_one }}``, ``{{ v|price:tick_size }}``, ``{{ symbol|short_symbol }}``, ``{{ seconds|ago }}``, ``{{ iso_or_datetime|utc }}``."""

from __future__ import annotations

from datetime import datetime

from django import template

from signals.display import money_text, percent_text, price_text, symbol_short

register = template.Library()


@register.filter
def money(value) -> str:
    return money_text(value)


@register.filter
def percent(value) -> str:
    return percent_text(value)


@register.filter
def percent_of_one(value) -> str:
    """A fraction as a percentage: 0.405 → 40.5%."""
    return percent_text(value, 1, fraction=True)


@register.filter
def price(value, tick_size=None) -> str:
    return price_text(value, tick_size)


@register.filter
def short_symbol(symbol) -> str:
    """BTC/USDT for the perpetual BTC/USDT:USDT."""
    return symbol_short(str(symbol))


@register.filter
def ago(seconds) -> str:
    """An age in words: 8 s, 14 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None or seconds == "":
        return "–"
    seconds = max(0, int(float(seconds)))
    if seconds < 90:
        return f"{seconds} s ago"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min ago"
    return f"{hours // 24} d {hours % 24} h ago"


@register.filter
def utc(value) -> str:
    """A moment as "2024-01-31 14:05 UTC" (from a datetime or an ISO 8601 string)."""
    if not value:
        return "–"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return f"{moment:%Y-%m-%d %H:%M} UTC"
