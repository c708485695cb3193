"""Button presses (callback queries) and the replies to multi-message inputs (/connect, settings values)."""

from __future__ import annotations

import html
import logging
import re

from django.core.exceptions import ValidationError

from accounts.inputs import NumberRangeError, preference_number_parse
from accounts.models import RISK_LEVELS
from accounts.services import preferences_update
from exchanges.errors import ExchangeConnectError
from telegram_bridge import commands, keyboards, onboarding, subscribe, texts
from telegram_bridge.conversations import (
    conversation_end,
    conversation_get,
    conversation_secrets,
    conversation_set,
    secret_seal,
)
from telegram_bridge.telegram_html import escape
from telegram_bridge.update_context import UpdateContext
from trading.connect import exchange_connect_verified

logger = logging.getLogger(__name__)


def callback_handle(ctx: UpdateContext, data: str) -> str:
    """Dispatch one callback; returns the activity name to record ("unknown" for data never issued)."""
    if data.startswith(subscribe.CALLBACK_PREFIX):
        return subscribe.subscribe_callback(ctx, data)
    if data.startswith(onboarding.CALLBACK_PREFIX):
        return onboarding.onboarding_callback(ctx, data)
    if data not in keyboards.issued_callback_data():
        ctx.answer("This button has expired. Send /dashboard for a fresh one.")
        return "unknown"
    kind, _, value = data.partition(":")
    if kind == "d":
        _dashboard_page(ctx, value)
    elif kind == "pnl":
        ctx.show(commands.pnl_text(ctx, value), markup=keyboards.pnl_periods())
    elif kind == "s":
        _setting(ctx, value)
    elif kind == "cx":
        _connect_exchange_chosen(ctx, value)
    ctx.answer()
    return data.split(":")[0] + ":" + data.split(":")[1] if kind == "s" else data


def _dashboard_page(ctx: UpdateContext, page: str) -> None:
    back = {"inline_keyboard": [keyboards.back_row()]}
    if page == "home":
        commands.dashboard(ctx, "")
    elif page == "signals":
        ctx.show(commands.signals_text(), markup=back)
    elif page == "pnl":
        ctx.show(commands.pnl_text(ctx, ctx.user.preferences.default_pnl_period), markup=keyboards.pnl_periods())
    elif page == "positions":
        ctx.show(commands.positions_text(ctx), markup=back)
    elif page == "settings":
        ctx.show(commands.settings_text(ctx), markup=commands.settings_markup(ctx))
    elif page == "mode":
        ctx.answer(_toast(commands.paper_mode_toggle(ctx)))
        commands.dashboard(ctx, "")
    elif page == "auto":
        answer = commands.auto_trading_switch(ctx, not ctx.user.auto_trading_enabled)
        ctx.answer(_toast(answer))
        if answer.startswith("⚠️"):  # what is missing, in full (a toast is cut at 200 characters)
            ctx.reply(answer)
        commands.dashboard(ctx, "")
    elif page == "help":
        ctx.show(texts.help_text(is_admin=ctx.is_admin), markup=back)
    elif page == "resume":
        resumed, result = commands.auto_trading_resume(ctx)
        ctx.answer("Auto-trading resumed." if resumed else "Nothing to resume.")
        ctx.show(result + "\n\n" + commands.settings_text(ctx), markup=commands.settings_markup(ctx))


def _toast(text: str) -> str:
    """A callback answer shows plain text: the first line, without the HTML of a message."""
    first = text.split("\n", 1)[0]
    return html.unescape(re.sub(r"<[^>]+>", "", first))[:200]


def _setting(ctx: UpdateContext, value: str) -> None:
    control, _, name = value.partition(":")
    prefs = ctx.user.preferences
    if control == "t" and name in keyboards.TOGGLES:
        commands.preferences_change(ctx, {name: not getattr(prefs, name)})
    elif control == "r" and name in RISK_LEVELS:
        levels = list(prefs.accepted_risk_levels or [])
        levels = [lv for lv in levels if lv != name] if name in levels else [*levels, name]
        commands.preferences_change(ctx, {"accepted_risk_levels": [lv for lv in RISK_LEVELS if lv in levels]})
    elif control == "c" and name in keyboards.CHOICES:
        options = keyboards.CHOICES[name][1]
        current = getattr(prefs, name)
        following = options[(options.index(current) + 1) % len(options)] if current in options else options[0]
        commands.preferences_change(ctx, {name: following})
    elif control == "i" and name in keyboards.NUMBERS:
        label, hint = keyboards.NUMBERS[name], keyboards.number_hint(name)
        conversation_set(telegram_id=ctx.user.telegram_id, state={"flow": "setting", "field": name})
        ctx.reply(f"Send the new value for <b>{escape(label)}</b>: {escape(hint)}. /cancel keeps the current one.")
        return
    ctx.show(commands.settings_text(ctx), markup=commands.settings_markup(ctx))


def _connect_exchange_chosen(ctx: UpdateContext, exchange: str) -> None:
    state = conversation_get(telegram_id=ctx.user.telegram_id)
    if not state or state.get("flow") != "connect":
        ctx.reply("Send /connect to connect an exchange.")
        return
    conversation_set(
        telegram_id=ctx.user.telegram_id, state={"flow": "connect", "step": "api_key", "exchange": exchange}
    )
    ctx.reply(f"{escape(dict(keyboards.CONNECTABLE_EXCHANGES)[exchange])}: send your <b>API key</b>.")


# --- text replies inside a conversation ----------------------------------------------------------------------------


def conversation_handle(ctx: UpdateContext, state: dict, text: str) -> str:
    """Handle a plain-text message that answers a question the bot asked; returns the activity name."""
    if state.get("flow") == "setting":
        _setting_value(ctx, state, text)
        return "setting_input"
    if state.get("flow") == "connect":
        _connect_step(ctx, state, text)
        return "connect_input"
    conversation_end(telegram_id=ctx.user.telegram_id)
    return "unknown_input"


def _setting_value(ctx: UpdateContext, state: dict, text: str) -> None:
    """A value typed for a setting. Wrong: the input stays open and the bot asks again with the allowed range
    (/cancel leaves it); saved: the input ends and the settings page is shown."""
    name = state.get("field", "")
    if name not in keyboards.NUMBERS:
        conversation_end(telegram_id=ctx.user.telegram_id)
        return
    raw = text.strip()
    value: object
    if name == "muted_symbols":
        # every spelling is read by preferences_update (accounts.symbols), which names a word it cannot read
        value = [] if raw == "-" else [part.strip() for part in raw.split(",") if part.strip()]
    else:
        try:  # shape and bounds first: "1e1000000" is refused before any arithmetic
            value = preference_number_parse(name, raw)
        except NumberRangeError:
            _ask_again(ctx, state, keyboards.number_refusal(name))
            return
    try:
        preferences_update(user=ctx.user, changes={name: value})
    except ValidationError as error:
        _ask_again(ctx, state, " ".join(dict.fromkeys(error.messages)))
        return
    conversation_end(telegram_id=ctx.user.telegram_id)
    ctx.user.preferences.refresh_from_db()
    if state.get("onboarding"):
        onboarding.step_after_input(ctx, name)
        return
    ctx.reply("✅ Saved.")
    ctx.reply(commands.settings_text(ctx), markup=commands.settings_markup(ctx))


def _ask_again(ctx: UpdateContext, state: dict, problem: str) -> None:
    """Keep the input open (a fresh 10 minutes) and ask again: the one message of the problem (it states the
    allowed range and units), then how to leave."""
    conversation_set(telegram_id=ctx.user.telegram_id, state=state)
    ctx.reply(
        f"⚠️ {escape(problem)} Send it again, or /cancel to keep the current "
        f"{'ones' if state.get('field') == 'muted_symbols' else 'value'}."
    )


def _connect_step(ctx: UpdateContext, state: dict, text: str) -> None:
    step, exchange = state.get("step"), state.get("exchange", "")
    if step == "exchange":
        choice = text.strip().lower()
        names = {v: v for v, _ in keyboards.CONNECTABLE_EXCHANGES} | {
            lbl.lower(): v for v, lbl in keyboards.CONNECTABLE_EXCHANGES
        }
        if choice not in names:
            ctx.reply("Choose an exchange with the buttons, or /cancel.", markup=keyboards.exchanges())
            return
        state = {"flow": "connect", "step": "exchange"}
        conversation_set(telegram_id=ctx.user.telegram_id, state=state)
        _connect_exchange_chosen(ctx, names[choice])
        return
    # Every other step carries a key: delete the message first, whatever happens next.
    deleted = ctx.delete_user_message()
    value = text.strip()
    if not value or len(value) > 512 or any(c.isspace() for c in value):
        ctx.reply(
            ("I deleted that message. " if deleted else "")
            + "It does not look like a key (a key has no spaces and at most 512 characters). Send it again, "
            "or /cancel."
        )
        return
    if step in {"api_key", "secret", "passphrase"}:
        state = {**state, step: secret_seal(value)}
    following = {
        "api_key": "secret",
        "secret": "passphrase" if exchange in keyboards.PASSPHRASE_EXCHANGES else "done",
        "passphrase": "done",
    }.get(step or "", "done")
    received = "Received (message deleted)." if deleted else _NOT_DELETED
    if following != "done":
        state["step"] = following
        conversation_set(telegram_id=ctx.user.telegram_id, state=state)
        ctx.reply(f"{received} Now send your <b>{'API secret' if following == 'secret' else 'passphrase'}</b>.")
        return
    conversation_end(telegram_id=ctx.user.telegram_id)
    if not deleted:
        ctx.reply(_NOT_DELETED)
    _connect_finish(ctx, exchange, conversation_secrets(state))


_NOT_DELETED = (
    "Received, but I could not delete your message: delete it yourself now so the key does not stay in this chat."
)


def key_message_delete(ctx: UpdateContext) -> None:
    """A message that looks like an API key, outside a /connect step (the conversation expired, or the key starts
    with "/"): delete it all the same, and say "deleted" only when Telegram confirmed it."""
    if ctx.delete_user_message():
        ctx.reply(
            "🔒 That looked like an API key, so I deleted it from this chat. To connect an exchange, send "
            "/connect and I will ask for each key in turn."
        )
    else:
        ctx.reply(
            "⚠️ That looks like an API key and I could not delete it: delete it yourself now. To connect an "
            "exchange, send /connect."
        )


def _connect_finish(ctx: UpdateContext, exchange: str, secrets: dict[str, str]) -> None:
    label = escape(dict(keyboards.CONNECTABLE_EXCHANGES).get(exchange, exchange))
    try:
        outcome = exchange_connect_verified(
            user=ctx.user,
            exchange=exchange,
            api_key=secrets.get("api_key", ""),
            secret=secrets.get("secret", ""),
            passphrase=secrets.get("passphrase", ""),
        )
    except Exception as error:
        if isinstance(error, ExchangeConnectError):
            ctx.reply(f"⚠️ {label} not connected. " + escape(str(error)[:400]))
        else:  # never log the exception text: it could echo a key
            logger.error("exchange connect failed for user %s: %s", ctx.user.pk, type(error).__name__)
            ctx.reply("⚠️ Could not connect the exchange right now. Please try again later.")
        return
    last4 = escape(getattr(outcome.credential, "last4", "") or "")
    lines = [f"✅ {label} connected (key …{last4}). Free balance: {texts.fmt_number(outcome.free_balance, 2)} USDT."]
    lines += [f"⚠️ {escape(warning)}" for warning in outcome.warnings]
    if ctx.user.preferences.paper_mode:
        lines.append(
            "/toggle_paper_mode switches to live trading on it; /autotrade on lets new signals open positions."
        )
    elif not ctx.user.auto_trading_enabled:
        lines.append("/autotrade on lets new signals open positions on it.")
    ctx.reply("\n".join(lines))
