"""Command handlers: thin — parse the arguments, call accounts/signals/trading/analytics, render a text.

Some services are looked up by name (``optional``) so the bot answers politely ("not available yet") when one
cannot be loaded instead of failing to start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import ValidationError

from accounts.entitlements import open_positions_limit
from accounts.login_links import login_link_create
from accounts.models import PnlPeriod
from accounts.policy import trading_mode_for_user
from accounts.services import AUTO_TRADING, preferences_update, telegram_user_ban_set
from accounts.symbols import symbol_base, symbol_canonical
from analytics.selectors import active_user_counts, heartbeat_age_seconds, user_counts
from analytics.services import backtest_run_start, broadcast_start
from config.events import outbox_waiting
from config.observability import error_counts
from signals.models import Signal
from signals.selectors import signal_list_open, signal_list_recent
from telegram_bridge import keyboards, subscribe, texts
from telegram_bridge.conversations import conversation_end, conversation_set
from telegram_bridge.telegram_html import escape
from telegram_bridge.update_context import UpdateContext
from trading.connect import exchange_disconnect
from trading.models import TradingSwitch
from trading.selectors import auto_trading_status_of, daily_risk_state_today, pnl_summary, position_list_open
from trading.services import user_auto_trading_resume

logger = logging.getLogger(__name__)

Handler = Callable[[UpdateContext, str], None]
COMMAND_HANDLERS: dict[str, Handler] = {}
ADMIN_HANDLERS: dict[str, Handler] = {}


def command(name: str, *, admin: bool = False):
    def register(function: Handler) -> Handler:
        (ADMIN_HANDLERS if admin else COMMAND_HANDLERS)[name] = function
        return function

    return register


def validation_message(error: ValidationError) -> str:
    """preferences_update's messages as the trader reads them (written for them: no field names)."""
    return "⚠️ " + escape(" ".join(dict.fromkeys(error.messages)) or "Invalid value.")


def preferences_change(ctx: UpdateContext, changes: dict) -> bool:
    """All validation in accounts.services.preferences_update; the user sees its message when refused."""
    try:
        preferences_update(user=ctx.user, changes=changes)
    except ValidationError as error:
        ctx.reply(validation_message(error))
        return False
    ctx.user.preferences.refresh_from_db()
    return True


# --- everyone ----------------------------------------------------------------------------------------------------


@command("start")
def start(ctx: UpdateContext, args: str, *, created: bool = False) -> None:
    ctx.reply(texts.welcome(first_name=ctx.user.first_name, created=created))


@command("help")
def help_(ctx: UpdateContext, args: str) -> None:
    ctx.reply(texts.help_text(is_admin=ctx.is_admin, topic=args.split()[0] if args.split() else ""))


def web_dashboard_url(ctx: UpdateContext) -> str | None:
    try:
        url = login_link_create(user=ctx.user)
    except Exception:
        logger.info("web login link unavailable", exc_info=True)
        return None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def dashboard_text(ctx: UpdateContext) -> str:
    mode = trading_mode_for_user(user=ctx.user)
    return (
        f"<b>Dashboard</b> — {escape(ctx.user.first_name or 'trader')}, you are in <b>{mode}</b> mode.\n"
        f"{texts.auto_trading_line(auto_trading_status_of(user=ctx.user))}\nChoose:"
    )


@command("dashboard")
def dashboard(ctx: UpdateContext, args: str) -> None:
    markup = keyboards.dashboard(
        paper_mode=ctx.user.preferences.paper_mode,
        auto_trading=ctx.user.auto_trading_enabled,
        web_url=web_dashboard_url(ctx),
    )
    ctx.show(dashboard_text(ctx), markup=markup)


def signals_text() -> str:
    recent = list(signal_list_recent(limit=10))
    open_signals = list(signal_list_open())
    return texts.signals_list(recent=recent, open_signals=open_signals[:20])


@command("signals")
def signals(ctx: UpdateContext, args: str) -> None:
    ctx.show(signals_text(), markup={"inline_keyboard": [keyboards.back_row()]})


def pnl_text(ctx: UpdateContext, period: str) -> str:
    return texts.pnl_summary(pnl_summary(user=ctx.user, period=period))


@command("pnl")
def pnl(ctx: UpdateContext, args: str) -> None:
    period = (args.split()[0].lower() if args.split() else "") or ctx.user.preferences.default_pnl_period
    if period not in PnlPeriod.values:
        ctx.reply("Usage: /pnl [today|week|month|all]")
        return
    ctx.show(pnl_text(ctx, period), markup=keyboards.pnl_periods())


def positions_text(ctx: UpdateContext) -> str:
    return texts.positions_list(list(position_list_open(user=ctx.user)))


@command("positions")
def positions(ctx: UpdateContext, args: str) -> None:
    ctx.show(positions_text(ctx), markup={"inline_keyboard": [keyboards.back_row()]})


def settings_text(ctx: UpdateContext) -> str:
    levels = ", ".join(ctx.user.preferences.accepted_risk_levels or [])
    muted = ", ".join(symbol_base(symbol) for symbol in ctx.user.preferences.muted_symbols or []) or "none"
    return (
        f"<b>Settings</b>\nTap a toggle to switch it, a value to change it.\nAccepted risk levels: "
        f"{escape(levels)}\nMuted: {escape(muted)}\n{texts.auto_trading_line(auto_trading_status_of(user=ctx.user))}"
    )


def settings_markup(ctx: UpdateContext) -> dict:
    return keyboards.settings_keyboard(ctx.user.preferences, paused=bool(auto_trading_pause_reason(ctx)))


@command("settings")
def settings_(ctx: UpdateContext, args: str) -> None:
    ctx.show(settings_text(ctx), markup=settings_markup(ctx))


@command("mute")
def mute(ctx: UpdateContext, args: str) -> None:
    symbol = symbol_canonical(args.split()[0]) if args.split() else None
    if symbol is None:
        ctx.reply("Usage: /mute SYMBOL, e.g. /mute DOGE")
        return
    muted = list(ctx.user.preferences.muted_symbols or [])
    if any(symbol_base(entry) == symbol_base(symbol) for entry in muted):
        ctx.reply(f"{escape(symbol)} is already muted.")
        return
    if preferences_change(ctx, {"muted_symbols": [*muted, symbol]}):
        ctx.reply(f"🔇 Muted {escape(symbol)}. /unmute {escape(symbol_base(symbol))} to undo.")


@command("unmute")
def unmute(ctx: UpdateContext, args: str) -> None:
    symbol = symbol_canonical(args.split()[0]) if args.split() else None
    if symbol is None:
        ctx.reply("Usage: /unmute SYMBOL, e.g. /unmute DOGE")
        return
    muted = list(ctx.user.preferences.muted_symbols or [])
    remaining = [entry for entry in muted if symbol_base(entry) != symbol_base(symbol)]
    if len(remaining) == len(muted):
        ctx.reply(f"{escape(symbol)} is not muted.")
        return
    if preferences_change(ctx, {"muted_symbols": remaining}):
        ctx.reply(f"🔔 {escape(symbol)} unmuted.")


def paper_mode_toggle(ctx: UpdateContext) -> str:
    """Switch paper/live through preferences_update (live needs a connected, verified exchange: it says so)."""
    going_live = ctx.user.preferences.paper_mode
    try:
        preferences_update(user=ctx.user, changes={"paper_mode": not going_live})
    except ValidationError as error:
        return validation_message(error)
    ctx.user.preferences.refresh_from_db()
    return "⚡ Live mode is on: new signals trade on your exchange." if going_live else "🧪 Paper mode is on."


@command("toggle_paper_mode")
def toggle_paper_mode(ctx: UpdateContext, args: str) -> None:
    ctx.reply(paper_mode_toggle(ctx))


def auto_trading_switch(ctx: UpdateContext, on: bool) -> str:
    """``/autotrade on|off`` and the dashboard's button: through preferences_update, which checks what switching on
    needs (a paper account, or a connected and verified exchange in live mode) and says what is missing."""
    try:
        preferences_update(user=ctx.user, changes={AUTO_TRADING: on})
    except ValidationError as error:
        return validation_message(error)
    ctx.user.refresh_from_db()
    status = auto_trading_status_of(user=ctx.user)
    if not on:
        return "⏹ Auto-trading is off: no new positions open. Open positions keep their stops and targets."
    mode = trading_mode_for_user(user=ctx.user)
    head = f"🤖 Auto-trading is on: new signals open {mode} positions for you."
    return head if status.is_on else f"{head}\n{texts.auto_trading_line(status)}"


@command("autotrade")
def autotrade(ctx: UpdateContext, args: str) -> None:
    choice = args.split()[0].lower() if args.split() else ""
    if choice not in {"on", "off"}:
        ctx.reply(
            f"{texts.auto_trading_line(auto_trading_status_of(user=ctx.user))}\nUsage: /autotrade on or /autotrade off"
        )
        return
    ctx.reply(auto_trading_switch(ctx, choice == "on"))


def auto_trading_pause_reason(ctx: UpdateContext) -> str:
    """Why the user's auto-trading is held by a rule /resume lifts (drawdown, exchange refusal, today's daily loss
    limit); "" if nothing holds it."""
    if ctx.user.auto_trading_paused_reason:
        return ctx.user.auto_trading_paused_reason
    day_state = daily_risk_state_today(user=ctx.user)
    return "daily loss limit reached" if day_state is not None and day_state.loss_limit_hit else ""


def auto_trading_resume(ctx: UpdateContext) -> tuple[bool, str]:
    """``/resume`` and the settings page button: lift the user's drawdown / daily-loss pause through
    ``trading.services.user_auto_trading_resume``. Returns (resumed, the answer to show)."""
    reason = auto_trading_pause_reason(ctx)
    if not reason:
        if not ctx.user.auto_trading_enabled:
            return False, "▶️ Your auto-trading is not paused, it is switched off. Send /autotrade on to switch it on."
        return False, "▶️ Your auto-trading is not paused: there is nothing to resume."
    user_auto_trading_resume(user=ctx.user)
    ctx.user.refresh_from_db()
    lines = [
        f"▶️ <b>Auto-trading resumed</b> (it was paused: {escape(reason)}).",
        "The drawdown is measured again from your current equity.",
    ]
    day_state = daily_risk_state_today(user=ctx.user)
    if day_state is not None:
        limit = day_state.start_equity * ctx.user.preferences.daily_loss_limit_pct / 100
        if -day_state.realised_pnl >= limit:
            lines.append(
                "⚠️ Today's loss is still at your daily loss limit, so new entries wait until tomorrow (UTC) "
                "unless you raise the limit in /settings."
            )
    if TradingSwitch.current().auto_trading_paused:
        lines.append("⚠️ Auto-trading is also paused for everybody by the operator; it restarts when they resume it.")
    if not ctx.user.auto_trading_enabled:
        lines.append(
            "Auto-trading is switched off for your account, so no positions open until you send /autotrade on."
        )
    return True, "\n".join(lines)


@command("resume")
def resume(ctx: UpdateContext, args: str) -> None:
    ctx.reply(auto_trading_resume(ctx)[1])


@command("connect")
def connect(ctx: UpdateContext, args: str) -> None:
    conversation_set(telegram_id=ctx.user.telegram_id, state={"flow": "connect", "step": "exchange"})
    ctx.reply(
        "Which exchange? Use an API key with trade rights and <b>without</b> withdrawal rights. Each message "
        "with a key is deleted right after I read it. /cancel stops.",
        markup=keyboards.exchanges(),
    )


@command("disconnect")
def disconnect(ctx: UpdateContext, args: str) -> None:
    if not ctx.user.credentials.filter(is_active=True).exists():
        ctx.reply("No exchange is connected.")
        return
    exchange_disconnect(user=ctx.user)
    ctx.reply(
        "Exchange disconnected. Your keys are removed and you are in paper mode: new positions, if "
        "auto-trading is on, are paper trades."
    )


@command("status")
def status(ctx: UpdateContext, args: str) -> None:
    prefs = ctx.user.preferences
    credential = ctx.user.credentials.filter(is_active=True).first()
    exchange = (
        f"{escape(credential.get_exchange_display())} (key …{escape(credential.last4)})" if credential else "none"
    )
    open_count = position_list_open(user=ctx.user).count()  # pending ones count against the limit too
    limit = open_positions_limit(ctx.user, preferred=prefs.max_open_positions)
    subscription = subscribe.subscription_current(user=ctx.user)
    ctx.reply(
        "\n".join(
            [
                "<b>Status</b>",
                f"Mode: {trading_mode_for_user(user=ctx.user)}",
                f"Exchange: {exchange}",
                texts.auto_trading_line(auto_trading_status_of(user=ctx.user)),
                f"DM alerts: {'on' if prefs.dm_alerts else 'off'} · risk levels: {escape(', '.join(prefs.accepted_risk_levels))}",
                f"Muted: {escape(', '.join(symbol_base(s) for s in prefs.muted_symbols or []) or 'none')}",
                f"Open positions: {open_count} / {limit}",
                f"Plan: {escape(subscription.plan.name) if subscription else 'free (signals only) — /subscribe'}",
            ]
        )
    )


@command("subscribe")
def subscribe_(ctx: UpdateContext, args: str) -> None:
    subscribe.subscribe_show(ctx)


@command("cancel")
def cancel(ctx: UpdateContext, args: str) -> None:
    conversation_end(telegram_id=ctx.user.telegram_id)
    ctx.reply("Cancelled.")


# --- admins ------------------------------------------------------------------------------------------------------


@command("admin", admin=True)
def admin(ctx: UpdateContext, args: str) -> None:
    """Users and DAU/WAU/MAU come from analytics.selectors, the same definitions as the control panel's."""
    from django.db.models import Count, Q

    users = user_counts()
    active = active_user_counts()
    signals_ = Signal.objects.aggregate(
        open=Count("id", filter=Q(status="open")),
        closed=Count("id", filter=Q(status="closed")),
        wins=Count("id", filter=Q(outcome__in=["tp1", "tp2"])),
        losses=Count("id", filter=Q(outcome="sl")),
    )
    age = heartbeat_age_seconds(name="worker")
    bridge_age = heartbeat_age_seconds(name="bridge")
    from telegram_bridge.models import Delivery

    pending = Delivery.objects.filter(status__in=["pending", "sending"]).count()
    errors = error_counts()
    errors_text = ", ".join(f"{escape(kind)} {count}" for kind, count in sorted(errors.items()) if count) or "none"
    ctx.reply(
        "\n".join(
            [
                "<b>Admin</b>",
                f"Users: {users['total']} (active {users['active']}, banned {users['banned']}, "
                f"auto-trading {users['auto_trading']})",
                f"DAU / WAU / MAU: {active['dau']} / {active['wau']} / {active['mau']}",
                f"Signals: {signals_['open']} open, {signals_['closed']} closed ({signals_['wins']} wins, {signals_['losses']} losses)",
                f"Worker heartbeat: {'never' if age is None else f'{age:.0f} s ago'}",
                f"Bridge polling: {'never (webhook mode?)' if bridge_age is None else f'{bridge_age:.0f} s ago'}",
                f"Telegram deliveries waiting: {pending}",
                f"Events waiting to be dispatched: {outbox_waiting()}",
                f"Errors today: {errors_text}",
            ]
        )
    )


@command("broadcast", admin=True)
def broadcast(ctx: UpdateContext, args: str) -> None:
    if not args.strip():
        ctx.reply("Usage: /broadcast TEXT")
        return
    try:
        broadcast_id = broadcast_start(text=args, requested_by_telegram_id=ctx.user.telegram_id)
    except ValueError as exc:
        ctx.reply(escape(str(exc)))
        return
    ctx.reply(f"Broadcast {broadcast_id} queued to {user_counts()['active']} active user(s).")


def _ban(ctx: UpdateContext, args: str, *, banned: bool) -> None:
    target = args.split()[0] if args.split() else ""
    if not target.isdigit() or len(target) > 19:
        ctx.reply(f"Usage: /{'ban' if banned else 'unban'} TELEGRAM_ID")
        return
    if int(target) == ctx.user.telegram_id:
        ctx.reply("You cannot ban yourself.")
        return
    if telegram_user_ban_set(telegram_id=int(target), banned=banned) is None:
        ctx.reply(f"No user {escape(target)}.")
        return
    ctx.reply(f"User {escape(target)} {'banned' if banned else 'unbanned'}.")


@command("ban", admin=True)
def ban(ctx: UpdateContext, args: str) -> None:
    _ban(ctx, args, banned=True)


@command("unban", admin=True)
def unban(ctx: UpdateContext, args: str) -> None:
    _ban(ctx, args, banned=False)


@command("backtest", admin=True)
def backtest(ctx: UpdateContext, args: str) -> None:
    parts = args.split()
    symbol = symbol_canonical(parts[0]) if parts else None
    if symbol is None or len(parts) < 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 3650:
        ctx.reply("Usage: /backtest SYMBOL DAYS, e.g. /backtest BTC 30")
        return
    try:
        run = backtest_run_start(
            params={"symbols": [symbol], "days": int(parts[1])}, requested_by_telegram_id=ctx.user.telegram_id
        )
    except ValueError as error:
        ctx.reply("⚠️ " + escape(str(error)[:300]))
        return
    ctx.reply(f"Backtest #{escape(run.pk)} of {escape(symbol)} over {escape(parts[1])} days started.")
