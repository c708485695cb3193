"""The settings form. It only parses the browser's input into Python values: every rule (ranges, leverage cap,
risk levels, symbol list, live mode and auto-trading prerequisites) is checked by
``accounts.services.preferences_update``, the one validator shared with the bot and the API, and its errors are shown
on the matching fields. The allowed ranges shown under the numbers come from ``accounts.preference_bounds``."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError

from accounts.inputs import NumberRangeError, preference_number_bounds, preference_number_parse
from accounts.models import RISK_LEVELS, PnlPeriod, SizingMode, UserPreferences
from accounts.preference_bounds import PREFERENCE_BOUNDS
from accounts.services import AUTO_TRADING
from accounts.symbols import symbol_base

BOOLEAN_FIELDS = (
    "dm_alerts",
    "news_signals",
    "flow_signals",
    "auto_flip",
    "paper_mode",
    "correlation_filter",
    "funding_alerts",
    "trailing_stop",
)
EDITABLE_FIELDS = (
    AUTO_TRADING,
    "paper_mode",
    "sizing_mode",
    "position_size_pct",
    "risk_per_trade_pct",
    "leverage",
    "max_open_positions",
    "daily_loss_limit_pct",
    "max_drawdown_pct",
    "accepted_risk_levels",
    "muted_symbols",
    "default_pnl_period",
    "dm_alerts",
    "news_signals",
    "flow_signals",
    "auto_flip",
    "correlation_filter",
    "funding_alerts",
    "trailing_stop",
)


class PreferenceNumberField(forms.Field):
    """A numeric preference read by ``accounts.inputs.preference_number_parse`` (shape and bounds before any
    arithmetic); the error states the allowed range."""

    widget = forms.TextInput

    def __init__(self, *, preference: str, **kwargs):
        self.preference = preference
        super().__init__(**kwargs)

    def widget_attrs(self, widget):
        bounds = preference_number_bounds(self.preference)
        return {
            **super().widget_attrs(widget),
            "inputmode": "numeric" if bounds.integer else "decimal",
            "title": bounds.allowed[0].upper() + bounds.allowed[1:],
        }

    def to_python(self, value):
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return None
        try:
            return preference_number_parse(self.preference, value)
        except NumberRangeError:  # the setting's one message (accounts.preference_bounds): name, range, units
            raise ValidationError(PREFERENCE_BOUNDS[self.preference].message(), code="range") from None


class PreferencesForm(forms.Form):
    auto_trading = forms.BooleanField(required=False, label="Auto-trading (new signals open positions for me)")
    paper_mode = forms.BooleanField(required=False, label="Paper trading (no real orders)")
    sizing_mode = forms.ChoiceField(choices=SizingMode.choices, label="Position sizing")
    position_size_pct = PreferenceNumberField(preference="position_size_pct", label="Position size, % of balance")
    risk_per_trade_pct = PreferenceNumberField(preference="risk_per_trade_pct", label="Risk per trade, % to the stop")
    leverage = PreferenceNumberField(preference="leverage", label="Leverage")
    max_open_positions = PreferenceNumberField(preference="max_open_positions", label="Max open positions")
    daily_loss_limit_pct = PreferenceNumberField(preference="daily_loss_limit_pct", label="Daily loss limit, %")
    max_drawdown_pct = PreferenceNumberField(preference="max_drawdown_pct", label="Max drawdown, %")
    accepted_risk_levels = forms.MultipleChoiceField(
        choices=[(level, level.title()) for level in RISK_LEVELS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Signal risk levels to trade",
    )
    muted_symbols = forms.CharField(
        required=False,
        label="Muted symbols (comma-separated)",
        widget=forms.TextInput(attrs={"placeholder": "DOGE, PEPE"}),
    )
    default_pnl_period = forms.ChoiceField(choices=PnlPeriod.choices, label="Default PnL period")
    dm_alerts = forms.BooleanField(required=False, label="Direct-message alerts")
    news_signals = forms.BooleanField(required=False, label="News signals")
    flow_signals = forms.BooleanField(required=False, label="Order-flow signals")
    auto_flip = forms.BooleanField(required=False, label="Auto-flip on strong opposite flow")
    correlation_filter = forms.BooleanField(required=False, label="Skip correlated positions")
    funding_alerts = forms.BooleanField(required=False, label="Funding-rate alerts")
    trailing_stop = forms.BooleanField(required=False, label="Trailing stop")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, bound in PREFERENCE_BOUNDS.items():
            self.fields[name].help_text = bound.allowed().capitalize()
            self.fields[name].error_messages["required"] = bound.message()  # an empty box: the same one message

    @classmethod
    def initial_from(cls, preferences: UserPreferences) -> dict:
        initial = {name: getattr(preferences, name) for name in EDITABLE_FIELDS if name != AUTO_TRADING}
        initial[AUTO_TRADING] = preferences.user.auto_trading_enabled
        initial["muted_symbols"] = ", ".join(symbol_base(symbol) for symbol in preferences.muted_symbols or [])
        for name, value in initial.items():  # 5.0000 → 5, 0.5000 → 0.5 (never 1E+1)
            if isinstance(value, Decimal):
                initial[name] = format(value.normalize(), "f")
        return initial

    def clean_muted_symbols(self) -> list[str]:
        """Split only: preferences_update reads every spelling (and names a word that is not a symbol)."""
        raw = self.cleaned_data.get("muted_symbols") or ""
        return [symbol.strip() for symbol in raw.split(",") if symbol.strip()]

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in EDITABLE_FIELDS}

    def readable_changes(self) -> dict:
        """Of an invalid form: the settings it could read (so the service reports its own errors for them too)."""
        return {
            name: self.cleaned_data[name]
            for name in EDITABLE_FIELDS
            if name in self.cleaned_data and name not in self.errors
        }

    def add_service_errors(self, error: ValidationError) -> None:
        """Show preferences_update's errors on their fields (non-field errors on top); a field that already shows
        an error keeps just that one."""
        if hasattr(error, "error_dict"):
            for field, messages in error.message_dict.items():
                if field in self.fields and field in self.errors:
                    continue
                self.add_error(field if field in self.fields else None, messages)
        else:
            self.add_error(None, error.messages)
