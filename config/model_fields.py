"""Decimal model fields for money, prices and quantities, so every app stores them with the same precision.

Prices and quantities of crypto perpetuals span 1e-8 (meme coins) to 1e5 (BTC): 28 digits with 12 decimals hold
both exactly. Account money (USDT) keeps 8 decimals, like the exchanges' balances.
"""

from decimal import Decimal

from django.db import models


def decimal_plain(value: Decimal | None) -> str:
    """The digits that matter, for names and labels: 0.000029600000 → 0.0000296, 100.000000000000 → 100."""
    if value is None:
        return "–"
    return format(value.normalize(), "f")


class PriceField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 28)
        kwargs.setdefault("decimal_places", 12)
        super().__init__(*args, **kwargs)


class QuantityField(PriceField):
    pass


class MoneyField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 24)
        kwargs.setdefault("decimal_places", 8)
        super().__init__(*args, **kwargs)


class PercentField(models.DecimalField):
    """A percentage such as 2.5 (meaning 2.5 %), four decimals."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 12)
        kwargs.setdefault("decimal_places", 4)
        super().__init__(*args, **kwargs)
