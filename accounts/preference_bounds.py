"""The one source of every numeric preference's bounds, and the one message a trader sees when a value is outside.

The model validators, ``accounts.services.preferences_update`` (bot, web form, API), the bot's input hints and the
web form's help texts all read this table; the leverage cap is ``settings.MAX_LEVERAGE``, read when checked.
Messages name the setting as a trader knows it and show its unit, never a field name or a second limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible


@dataclass(frozen=True)
class PreferenceBound:
    label: str  # as the trader reads it: "Leverage"
    minimum: Decimal
    maximum: Decimal | Callable[[], Decimal]
    unit: str = ""  # "%", "x"
    whole: bool = False  # a whole number

    def upper(self) -> Decimal:
        return Decimal(self.maximum()) if callable(self.maximum) else self.maximum

    def show(self, value: Decimal) -> str:
        text = format(Decimal(value).normalize(), "f")
        return f"{text}{self.unit}"

    def allowed(self) -> str:
        """'from 1x to 20x' — the allowed range, units shown."""
        return f"from {self.show(self.minimum)} to {self.show(self.upper())}"

    def message(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        return f"{self.label} must be {kind} {self.allowed()}."

    def hint(self) -> str:
        """For an input prompt: 'a whole number from 1x to 20x'."""
        return f"{'a whole number' if self.whole else 'a number'} {self.allowed()}"


PREFERENCE_BOUNDS: dict[str, PreferenceBound] = {
    "position_size_pct": PreferenceBound("Position size", Decimal("0.1"), Decimal("100"), "%"),
    "risk_per_trade_pct": PreferenceBound("Risk per trade", Decimal("0.05"), Decimal("10"), "%"),
    "max_open_positions": PreferenceBound("Max open positions", Decimal("1"), Decimal("50"), whole=True),
    "leverage": PreferenceBound("Leverage", Decimal("1"), lambda: Decimal(settings.MAX_LEVERAGE), "x", whole=True),
    "daily_loss_limit_pct": PreferenceBound("Daily loss limit", Decimal("0.5"), Decimal("100"), "%"),
    "max_drawdown_pct": PreferenceBound("Max drawdown", Decimal("1"), Decimal("100"), "%"),
}


def bound_check(name: str, value) -> None:
    """Raise ``ValidationError`` with the setting's one message when ``value`` is outside its bounds."""
    bound = PREFERENCE_BOUNDS[name]
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ValidationError(bound.message(), code="bounds") from None
    if isinstance(value, bool) or not number.is_finite():
        raise ValidationError(bound.message(), code="bounds")
    if bound.whole and number != number.to_integral_value():
        raise ValidationError(bound.message(), code="bounds")
    if not bound.minimum <= number <= bound.upper():
        raise ValidationError(bound.message(), code="bounds")


@deconstructible
class WithinBounds:
    """Model validator reading ``PREFERENCE_BOUNDS[name]`` (so the admin refuses with the same message)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, value) -> None:
        bound_check(self.name, value)

    def __eq__(self, other) -> bool:
        return isinstance(other, WithinBounds) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)
