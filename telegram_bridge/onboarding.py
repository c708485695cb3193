"""``/start``: a new trader is walked through the choices that matter, with buttons, and ends on the dashboard.

1. paper or live  2. position size  3. risk levels of the signals to follow  4. auto-trading on or off.

Every step is skippable ("Skip setup" goes straight to the dashboard) and every choice is saved through
``accounts.services.preferences_update`` — the same door as /settings, the web form and the API — so a choice it
refuses (live without an exchange or a plan, auto-trading without what it needs) is explained with its own message
and the walk goes on. "Other…" for the size opens the usual number input (a wrong value is asked again).

Callback data: ``o:<step>:<value>`` (the vocabulary is ``issued_callback_data``).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError

from accounts.models import RISK_LEVELS
from accounts.policy import trading_mode_for_user
from accounts.services import AUTO_TRADING, preferences_update
from telegram_bridge import commands, keyboards, texts
from telegram_bridge.conversations import conversation_set
from telegram_bridge.telegram_html import escape
from telegram_bridge.update_context import UpdateContext

CALLBACK_PREFIX = "o:"
SIZES = ("1", "2", "5", "10")
STEPS = 4


def _button(text: str, data: str) -> dict:
    return {"text": text, "callback_data": data}


SKIP_ROW = [_button("⏭ Skip setup", "o:skip")]


def issued_callback_data() -> set[str]:
    data = {
        "o:skip",
        "o:begin",
        "o:mode:paper",
        "o:mode:live",
        "o:size:other",
        "o:risk:next",
        "o:auto:on",
        "o:auto:off",
    }
    return data | {f"o:size:{size}" for size in SIZES} | {f"o:risk:{level}" for level in RISK_LEVELS}


def returning_markup() -> dict:
    """Under a returning trader's welcome: the dashboard, or the walk again."""
    return {"inline_keyboard": [[_button("📊 Dashboard", "d:home"), _button("🔁 Set up again", "o:begin")]]}


def _show(ctx: UpdateContext, page: tuple[str, dict]) -> None:
    text, markup = page
    ctx.show(text, markup=markup)


def _note(note: str) -> str:
    return f"{note}\n\n" if note else ""


def mode_step(note: str = "") -> tuple[str, dict]:
    text = (
        f"{_note(note)}<b>1/{STEPS} · Paper or live?</b>\n"
        "🧪 <b>Paper</b> follows every signal with a virtual balance: no real money at stake.\n"
        "⚡ <b>Live</b> places real orders on your exchange (it needs a plan with live trading and your "
        "exchange's API keys)."
    )
    return text, {
        "inline_keyboard": [[_button("🧪 Paper", "o:mode:paper"), _button("⚡ Live", "o:mode:live")], SKIP_ROW]
    }


def size_step(ctx: UpdateContext, note: str = "") -> tuple[str, dict]:
    current = format(ctx.user.preferences.position_size_pct.normalize(), "f")
    text = (
        f"{_note(note)}<b>2/{STEPS} · Position size</b>\n"
        f"How much of your balance backs each position (its margin)? Now: <b>{escape(current)}%</b>."
    )
    sizes = [
        _button(f"{'• ' if Decimal(size) == ctx.user.preferences.position_size_pct else ''}{size}%", f"o:size:{size}")
        for size in SIZES
    ]
    return text, {"inline_keyboard": [sizes, [_button("Other…", "o:size:other")], SKIP_ROW]}


def risk_step(ctx: UpdateContext, note: str = "") -> tuple[str, dict]:
    levels = ctx.user.preferences.accepted_risk_levels or []
    text = (
        f"{_note(note)}<b>3/{STEPS} · Risk levels</b>\n"
        "Each signal carries a risk level (how far its stop is, how volatile the coin). Which ones do you want "
        f"to follow? Now: <b>{escape(', '.join(levels))}</b>."
    )
    toggles = [_button(f"{'✅' if level in levels else '⬜'} {level}", f"o:risk:{level}") for level in RISK_LEVELS]
    return text, {"inline_keyboard": [toggles, [_button("Next ➡️", "o:risk:next")], SKIP_ROW]}


def auto_step(ctx: UpdateContext, note: str = "") -> tuple[str, dict]:
    mode = trading_mode_for_user(user=ctx.user)
    text = (
        f"{_note(note)}<b>4/{STEPS} · Auto-trading</b>\n"
        f"With auto-trading on, each new signal you follow opens a <b>{mode}</b> position for you, with its stop "
        "and targets. You can switch it off any time (/autotrade off)."
    )
    return text, {
        "inline_keyboard": [[_button("🤖 Switch it on", "o:auto:on"), _button("Not now", "o:auto:off")], SKIP_ROW]
    }


def _save(ctx: UpdateContext, changes: dict) -> str:
    """Save through the one preferences door; "" when saved, else its message (written for the trader)."""
    try:
        preferences_update(user=ctx.user, changes=changes)
    except ValidationError as error:
        return commands.validation_message(error)
    ctx.user.refresh_from_db()
    ctx.user.preferences.refresh_from_db()
    return ""


def onboarding_callback(ctx: UpdateContext, data: str) -> str:
    """One tap of the walk; returns the activity name."""
    if data not in issued_callback_data():
        ctx.answer("This button has expired. Send /start for a fresh one.")
        return "unknown"
    _, step, value = [*data.split(":"), ""][:3]
    if step == "skip":
        ctx.answer("Setup skipped: everything is in /settings.")
        commands.dashboard(ctx, "")
    elif step == "begin":
        _show(ctx, mode_step())
    elif step == "mode":
        refused = _save(ctx, {"paper_mode": value == "paper"})
        note = (
            "" if not refused else f"{refused}\nYou can go live later: /connect your exchange, then /toggle_paper_mode."
        )
        _show(ctx, size_step(ctx, note))
    elif step == "size" and value == "other":
        conversation_set(
            telegram_id=ctx.user.telegram_id,
            state={"flow": "setting", "field": "position_size_pct", "onboarding": True},
        )
        ctx.reply(f"Send the position size: {escape(keyboards.number_hint('position_size_pct'))}. /cancel stops.")
    elif step == "size":
        refused = _save(ctx, {"position_size_pct": Decimal(value)})
        _show(ctx, size_step(ctx, refused) if refused else risk_step(ctx))
    elif step == "risk" and value == "next":
        _show(ctx, auto_step(ctx))
    elif step == "risk":
        levels = list(ctx.user.preferences.accepted_risk_levels or [])
        levels = [lv for lv in levels if lv != value] if value in levels else [*levels, value]
        refused = _save(ctx, {"accepted_risk_levels": levels})
        _show(ctx, risk_step(ctx, refused))
    elif step == "auto":
        refused = _save(ctx, {AUTO_TRADING: value == "on"})
        ctx.answer("Auto-trading is on." if value == "on" and not refused else "You're set.")
        _finish(ctx, refused)
    ctx.answer()
    return f"onboarding:{step}"


def _finish(ctx: UpdateContext, note: str) -> None:
    """The end of the walk: the dashboard, with what could not be switched on (if anything)."""
    if note:
        ctx.reply(note)
    ctx.user.refresh_from_db()
    commands.dashboard(ctx, "")


def step_after_input(ctx: UpdateContext, name: str) -> None:
    """A value typed during the walk was saved: the next step, as a new message (the input was a text message)."""
    ctx.reply("✅ Saved.")
    text, markup = risk_step(ctx) if name == "position_size_pct" else auto_step(ctx)
    ctx.reply(text, markup=markup)


def welcome(ctx: UpdateContext, *, created: bool) -> None:
    """/start: the welcome and the disclaimer; a new trader gets the walk's first step at once."""
    ctx.reply(
        texts.welcome(first_name=ctx.user.first_name, created=created), markup=None if created else returning_markup()
    )
    if created:
        text, markup = mode_step()
        ctx.reply(text, markup=markup)
