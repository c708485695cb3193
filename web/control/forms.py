from django import forms

from accounts.symbols import symbol_canonical
from analytics.services import BROADCAST_MAX_LENGTH


class BroadcastForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        max_length=BROADCAST_MAX_LENGTH,
        help_text="Plain text; it is HTML-escaped and sent through the bot's rate-limited sender.",
    )


class AutoTradingForm(forms.Form):
    action = forms.ChoiceField(choices=[("pause", "Pause"), ("resume", "Resume")])
    reason = forms.CharField(required=False, max_length=200)


class BacktestForm(forms.Form):
    symbols = forms.CharField(initial="XRP/USDT:USDT", max_length=2000, help_text="Comma-separated ccxt symbols")
    days = forms.IntegerField(initial=30, min_value=1, max_value=3650)


class UserActionForm(forms.Form):
    telegram_ids = forms.CharField(max_length=2000, label="Telegram ids", help_text="One or more, comma-separated")
    action = forms.ChoiceField(choices=[("ban", "Ban"), ("unban", "Unban"), ("grant", "Grant / extend subscription")])
    days = forms.IntegerField(initial=30, min_value=1, max_value=3650, required=False, help_text="For grant / extend")

    def clean_telegram_ids(self) -> list[int]:
        raw = [part.strip() for part in self.cleaned_data["telegram_ids"].replace(" ", ",").split(",") if part.strip()]
        try:
            ids = sorted({int(part) for part in raw})
        except ValueError:
            raise forms.ValidationError("Telegram ids are whole numbers.") from None
        if not ids or len(ids) > 200:
            raise forms.ValidationError("Give between 1 and 200 Telegram ids.")
        return ids


class SymbolMuteForm(forms.Form):
    symbol = forms.CharField(max_length=40, help_text="ccxt symbol (BTC/USDT:USDT) or a base coin (BTC)")
    action = forms.ChoiceField(choices=[("mute", "Mute globally"), ("unmute", "Unmute")])

    def clean_symbol(self) -> str:
        """Any spelling ("doge", "DOGEUSDT", "DOGE/USDT", "BTC/USDT:USDT"); refused when it is not a symbol."""
        value = self.cleaned_data["symbol"].strip().upper()
        canonical = symbol_canonical(value)
        if canonical is None:
            raise forms.ValidationError("Write a coin such as BTC, or a market such as BTC/USDT:USDT.")
        return value if "/" in value else canonical  # a market as written; a coin ("doge", "DOGEUSDT") as its perpetual
