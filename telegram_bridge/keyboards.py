"""Inline keyboards (as Bot API dicts) and the callback data they issue.

Callback data (≤ 64 bytes) is a closed vocabulary: ``d:<page>``, ``pnl:<period>``, ``s:t:<flag>``, ``s:r:<level>``,
``s:c:<choice>``, ``s:i:<number>``, ``cx:<exchange>``. Anything else is "never issued" and refused politely.
"""

from __future__ import annotations

from accounts.models import RISK_LEVELS, Exchange, PnlPeriod, SizingMode, UserPreferences
from accounts.preference_bounds import PREFERENCE_BOUNDS

DASHBOARD_PAGES = ("home", "signals", "pnl", "positions", "settings", "mode", "auto", "help", "resume")

# preference -> label, for each kind of control
TOGGLES = {
    "dm_alerts": "DM alerts",
    "news_signals": "News signals",
    "flow_signals": "Order-flow signals",
    "auto_flip": "Auto-flip on strong flow",
    "correlation_filter": "Correlation filter",
    "funding_alerts": "Funding alerts",
    "trailing_stop": "Trailing stop",
}
CHOICES = {
    "default_pnl_period": ("Default PnL period", [c.value for c in PnlPeriod]),
    "sizing_mode": ("Sizing", [c.value for c in SizingMode]),
}

# number input -> label; its hint comes from accounts.preference_bounds (``number_hint``)
NUMBERS = {
    "position_size_pct": "Position size %",
    "risk_per_trade_pct": "Risk per trade %",
    "max_open_positions": "Max open positions",
    "leverage": "Leverage",
    "daily_loss_limit_pct": "Daily loss limit %",
    "max_drawdown_pct": "Max drawdown %",
    "muted_symbols": "Muted symbols",
}
MUTED_SYMBOLS_HINT = "coin names separated by commas (e.g. DOGE, PEPE), or - for none"


def number_hint(name: str) -> str:
    """What to send for a number input: 'a whole number from 1x to 20x' (the one bound of the setting)."""
    bound = PREFERENCE_BOUNDS.get(name)
    return bound.hint() if bound is not None else MUTED_SYMBOLS_HINT


def number_refusal(name: str) -> str:
    """The one message of a value that is not a number in range: 'Leverage must be a whole number from 1x to 20x.'"""
    bound = PREFERENCE_BOUNDS.get(name)
    return bound.message() if bound is not None else f"{NUMBERS[name]}: send {MUTED_SYMBOLS_HINT}."


CONNECTABLE_EXCHANGES = [(c.value, c.label) for c in Exchange]
PASSPHRASE_EXCHANGES = frozenset({"okx", "kucoinfutures"})


def _button(text: str, data: str) -> dict:
    return {"text": text, "callback_data": data}


def dashboard(*, paper_mode: bool, auto_trading: bool = False, web_url: str | None = None) -> dict:
    rows = [
        [_button("📈 Signals", "d:signals"), _button("💰 PnL", "d:pnl")],
        [_button("📂 Positions", "d:positions"), _button("⚙️ Settings", "d:settings")],
        [
            _button("🧪 Paper mode: on" if paper_mode else "⚡ Live mode: on", "d:mode"),
            _button("🤖 Auto-trading: on" if auto_trading else "🤖 Auto-trading: off", "d:auto"),
        ],
        [_button("❓ Help", "d:help")],
    ]
    if web_url:
        rows.append([{"text": "🌐 Open web dashboard", "url": web_url}])
    return {"inline_keyboard": rows}


def back_row() -> list[dict]:
    return [_button("⬅️ Dashboard", "d:home")]


def pnl_periods() -> dict:
    return {"inline_keyboard": [[_button(c.label, f"pnl:{c.value}") for c in PnlPeriod], back_row()]}


def settings_keyboard(preferences: UserPreferences, *, paused: bool = False) -> dict:
    """The settings page; ``paused`` (the user's auto-trading is paused by a risk rule) adds the Resume button."""
    rows = [[_button("▶️ Resume auto-trading", "d:resume")]] if paused else []
    toggles = [
        _button(f"{'✅' if getattr(preferences, name) else '⬜'} {label}", f"s:t:{name}")
        for name, label in TOGGLES.items()
    ]
    rows += [toggles[i : i + 2] for i in range(0, len(toggles), 2)]
    levels = preferences.accepted_risk_levels or []
    rows.append([_button(f"{'✅' if level in levels else '⬜'} {level} risk", f"s:r:{level}") for level in RISK_LEVELS])
    rows.append(
        [_button(f"{label}: {getattr(preferences, name)}", f"s:c:{name}") for name, (label, _) in CHOICES.items()]
    )
    numbers = [_button(f"{label}: {_value(preferences, name)}", f"s:i:{name}") for name, label in NUMBERS.items()]
    rows += [numbers[i : i + 2] for i in range(0, len(numbers), 2)]
    rows.append(back_row())
    return {"inline_keyboard": rows}


def _value(preferences: UserPreferences, name: str) -> str:
    value = getattr(preferences, name)
    if name == "muted_symbols":
        return str(len(value or []))
    text = format(value.normalize(), "f") if hasattr(value, "normalize") else str(value)
    return text[:12]


def exchanges() -> dict:
    return {"inline_keyboard": [[_button(label, f"cx:{value}")] for value, label in CONNECTABLE_EXCHANGES]}


def issued_callback_data() -> set[str]:
    """Every callback data the bot can issue (used by tests and to refuse anything else)."""
    data = {f"d:{page}" for page in DASHBOARD_PAGES} | {f"pnl:{c.value}" for c in PnlPeriod}
    data |= {f"s:t:{name}" for name in TOGGLES} | {f"s:r:{level}" for level in RISK_LEVELS}
    data |= {f"s:c:{name}" for name in CHOICES} | {f"s:i:{name}" for name in NUMBERS}
    data |= {f"cx:{value}" for value, _ in CONNECTABLE_EXCHANGES}
    return data
