from django import forms


class BroadcastForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 60}), max_length=3500,
                           help_text="Plain text; it is HTML-escaped and sent through the bot's rate-limited sender.")


class AutoTradingForm(forms.Form):
    action = forms.ChoiceField(choices=[("pause", "Pause"), ("resume", "Resume")])
    reason = forms.CharField(required=False, max_length=200)


class BacktestForm(forms.Form):
    symbols = forms.CharField(initial="XRP/USDT:USDT", max_length=2000, help_text="Comma-separated ccxt symbols")
    days = forms.IntegerField(initial=30, min_value=1, max_value=3650)
