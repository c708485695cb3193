"""Explicit input and output serializers of the REST API (one pair per operation, HackSoft style)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.inputs import NumberRangeError, preference_number_bounds, preference_number_parse
from accounts.models import RISK_LEVELS, PnlPeriod, SizingMode
from accounts.preference_bounds import PREFERENCE_BOUNDS

# ---- inputs -------------------------------------------------------------------------------------------------------


class SignalListInput(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
    source = serializers.ChoiceField(choices=["technical", "news", "flow"], required=False)


class PositionListInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["open", "closed"], default="open")
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)


class PnlInput(serializers.Serializer):
    period = serializers.ChoiceField(choices=PnlPeriod.values, default=PnlPeriod.TODAY)


class _PreferenceNumber:
    """A numeric preference read by ``accounts.inputs.preference_number_parse`` (type, shape and bounds before any
    arithmetic; NaN, inf, exponents and huge values are refused with the allowed range). The bounds also go into the
    OpenAPI schema."""

    def __init__(self, *, preference: str, **kwargs):
        self.preference = preference
        bounds = preference_number_bounds(preference)
        super().__init__(min_value=bounds.minimum, max_value=bounds.maximum, required=False, **kwargs)

    def to_internal_value(self, data):
        try:
            return preference_number_parse(self.preference, data)
        except NumberRangeError:
            raise serializers.ValidationError(PREFERENCE_BOUNDS[self.preference].message(), code="range") from None


class PreferenceInteger(_PreferenceNumber, serializers.IntegerField):
    pass


class PreferenceDecimal(_PreferenceNumber, serializers.DecimalField):
    def __init__(self, *, preference: str, **kwargs):
        super().__init__(preference=preference, max_digits=12, decimal_places=4, **kwargs)


class PreferencesUpdateInput(serializers.Serializer):
    """Every field optional (PATCH). Types are checked here; every rule and bound by
    accounts.services.preferences_update (the bot and the web form call it too)."""

    auto_trading = serializers.BooleanField(
        required=False,
        help_text="Switch auto-trading on or off. Switching on "
        "is refused with what is missing (live mode: a connected exchange).",
    )
    muted_symbols = serializers.ListField(child=serializers.CharField(max_length=40), max_length=200, required=False)
    default_pnl_period = serializers.ChoiceField(choices=PnlPeriod.values, required=False)
    dm_alerts = serializers.BooleanField(required=False)
    news_signals = serializers.BooleanField(required=False)
    flow_signals = serializers.BooleanField(required=False)
    auto_flip = serializers.BooleanField(required=False)
    sizing_mode = serializers.ChoiceField(choices=SizingMode.values, required=False)
    position_size_pct = PreferenceDecimal(preference="position_size_pct")
    risk_per_trade_pct = PreferenceDecimal(preference="risk_per_trade_pct")
    max_open_positions = PreferenceInteger(preference="max_open_positions")
    accepted_risk_levels = serializers.ListField(
        child=serializers.ChoiceField(choices=RISK_LEVELS), max_length=3, required=False
    )
    paper_mode = serializers.BooleanField(required=False)
    correlation_filter = serializers.BooleanField(required=False)
    funding_alerts = serializers.BooleanField(required=False)
    leverage = PreferenceInteger(preference="leverage")
    trailing_stop = serializers.BooleanField(required=False)
    daily_loss_limit_pct = PreferenceDecimal(preference="daily_loss_limit_pct")
    max_drawdown_pct = PreferenceDecimal(preference="max_drawdown_pct")


# ---- outputs ------------------------------------------------------------------------------------------------------

MONEY_PLACES = Decimal("0.00000001")


def decimal_text(value: Decimal | None, step: Decimal | None = None) -> str | None:
    """A plain decimal string (never "0E-8" or "1E+1"): at ``step``'s precision (a market's tick or amount step)
    when given, else as stored without trailing zeros."""
    if value is None:
        return None
    value = Decimal(value)
    if step:
        exponent = Decimal(step).normalize().as_tuple().exponent
        value = value.quantize(Decimal(1).scaleb(min(int(exponent), 0)))
        return format(value, "f")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def money_text(value: Decimal | None) -> str | None:
    """USDT amounts at the money columns' 8 places, plain."""
    return None if value is None else format(Decimal(value).quantize(MONEY_PLACES), "f")


@extend_schema_field(OpenApiTypes.STR)
class MarketDecimal(serializers.Field):
    """A price or quantity as a plain string at its market's precision (``Symbol.tick_size`` / ``step_size``)."""

    def __init__(self, *, step: str = "tick_size", **kwargs):
        kwargs.setdefault("read_only", True)
        self.step = step
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        value = super().get_attribute(instance)
        return value, getattr(getattr(instance, "symbol", None), self.step, None)

    def to_representation(self, pair):
        value, step = pair
        return decimal_text(value, step)


@extend_schema_field(OpenApiTypes.STR)
class Money(serializers.Field):
    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return money_text(value)


class SignalOutput(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField(source="symbol.symbol")
    side = serializers.CharField()
    source = serializers.CharField()
    timeframe = serializers.CharField()
    entry = MarketDecimal()
    stop = MarketDecimal()
    tp1 = MarketDecimal()
    tp2 = MarketDecimal()
    risk_level = serializers.CharField()
    status = serializers.CharField()
    outcome = serializers.CharField()
    outcome_pnl_pct = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    headline = serializers.CharField()
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)


class PositionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField(source="symbol.symbol")
    signal_id = serializers.IntegerField(allow_null=True)
    side = serializers.CharField()
    mode = serializers.CharField()
    exchange = serializers.CharField()
    status = serializers.CharField()
    leverage = serializers.IntegerField()
    quantity = MarketDecimal(step="step_size")
    remaining_quantity = MarketDecimal(step="step_size")
    entry_price = MarketDecimal(allow_null=True)
    stop_price = MarketDecimal()
    tp1_price = MarketDecimal(allow_null=True)
    tp2_price = MarketDecimal(allow_null=True)
    realised_pnl = Money()
    fees = Money()
    funding = Money()
    net_pnl = Money()
    close_reason = serializers.CharField()
    opened_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)


class PnlOutput(serializers.Serializer):
    period = serializers.CharField()
    available = serializers.BooleanField(help_text="False while the trading app does not provide PnL summaries")
    summary = serializers.DictField(allow_null=True, help_text="trading.selectors.PnlSummary fields")
    equity_curve = serializers.ListField(child=serializers.DictField(), help_text="[{at, equity}]")


class AutoTradingStatusOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=["on", "paused", "off"])
    reason = serializers.CharField(help_text="Why it is paused or off")
    action = serializers.CharField(help_text="What turns it back on: resume, switch_on, wait_operator, or empty")


class PreferencesOutput(serializers.Serializer):
    auto_trading = serializers.BooleanField(source="user.auto_trading_enabled")
    auto_trading_status = AutoTradingStatusOutput(help_text="On, paused or off, why, and the action that turns it on")
    muted_symbols = serializers.ListField(child=serializers.CharField())
    default_pnl_period = serializers.CharField()
    dm_alerts = serializers.BooleanField()
    news_signals = serializers.BooleanField()
    flow_signals = serializers.BooleanField()
    auto_flip = serializers.BooleanField()
    sizing_mode = serializers.CharField()
    position_size_pct = serializers.DecimalField(max_digits=12, decimal_places=4)
    risk_per_trade_pct = serializers.DecimalField(max_digits=12, decimal_places=4)
    max_open_positions = serializers.IntegerField()
    accepted_risk_levels = serializers.ListField(child=serializers.CharField())
    paper_mode = serializers.BooleanField()
    correlation_filter = serializers.BooleanField()
    funding_alerts = serializers.BooleanField()
    leverage = serializers.IntegerField()
    trailing_stop = serializers.BooleanField()
    daily_loss_limit_pct = serializers.DecimalField(max_digits=12, decimal_places=4)
    max_drawdown_pct = serializers.DecimalField(max_digits=12, decimal_places=4)
    updated_at = serializers.DateTimeField()


class ErrorOutput(serializers.Serializer):
    detail = serializers.JSONField()


class WebhookAckOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["accepted", "duplicate"])
    events = serializers.IntegerField(required=False)
