"""Message texts (Telegram HTML). Every dynamic value goes through ``escape``; nothing here touches the database."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from telegram_bridge.telegram_html import escape

DISCLAIMER = (
    "<i>Signals are not financial advice. Perpetual futures are leveraged; you can lose more than you "
    "expect. Paper mode is on until you switch to live.</i>"
)

# command -> (one-line summary, detailed help)
COMMANDS: dict[str, tuple[str, str]] = {
    "start": (
        "welcome and a 4-tap setup",
        "Registers you, shows the welcome and the disclaimer, and walks you through "
        "paper or live, position size, risk levels and auto-trading (skippable; "
        "everything stays changeable in /settings).",
    ),
    "help": ("this help centre", "/help lists every command; /help COMMAND explains one."),
    "dashboard": ("buttons for everything", "Inline buttons: signals, PnL, positions, settings, paper/live, help."),
    "signals": ("recent and open signals", "The latest signals with their outcomes, and the ones still open."),
    "pnl": (
        "profit and loss",
        "/pnl [today|week|month|all] — realised and unrealised PnL, win rate, fees and funding. "
        "Without a period it uses your default (see /settings).",
    ),
    "positions": ("open positions", "Your open positions with entry, stop, targets and unrealised PnL."),
    "settings": (
        "your preferences",
        "Toggles and inputs for every preference: DM alerts, risk levels, size, "
        "leverage, max positions, filters, default PnL period…",
    ),
    "mute": ("mute a symbol", "/mute SYMBOL — no more signals for it (e.g. /mute DOGE)."),
    "unmute": ("unmute a symbol", "/unmute SYMBOL — signals for it again."),
    "toggle_paper_mode": (
        "switch paper/live",
        "Switches between paper trading and live trading on your exchange (live needs /connect first).",
    ),
    "autotrade": (
        "switch auto-trading on or off",
        "/autotrade on — new signals open positions for you (paper or "
        "live, as your mode says); /autotrade off — no new positions. "
        "Switching on tells you what is missing, if anything. Also on "
        "the /dashboard button.",
    ),
    "connect": (
        "connect an exchange",
        "Starts a short conversation: exchange, API key, secret (and passphrase). "
        "Each message carrying a key is deleted right after reading. Use read+trade "
        "keys without withdrawal rights.",
    ),
    "disconnect": (
        "disconnect your exchange",
        "Removes your exchange keys; you are back in paper mode (live mode needs an exchange).",
    ),
    "resume": (
        "resume paused auto-trading",
        "After the max-drawdown or daily-loss rule paused your auto-trading, "
        "/resume (or ▶️ Resume on the settings page) starts it again; the "
        "drawdown is measured afresh from your current equity. After an "
        "exchange refusal switched it off, /autotrade on starts it again.",
    ),
    "status": (
        "your account at a glance",
        "Mode, exchange, auto-trading (on, paused or off, why, and what turns "
        "it back on), alerts, muted symbols and open positions.",
    ),
    "subscribe": (
        "plans and payment",
        "Signals are free. A plan unlocks live auto-trading, news and order-flow "
        "alerts and more open positions; pay by card (Whop) or with Solana Pay.",
    ),
    "cancel": ("cancel the current input", "Stops a /connect or settings input in progress."),
}
ADMIN_COMMANDS: dict[str, tuple[str, str]] = {
    "admin": ("users, activity, signals, health", "Users, DAU/WAU/MAU, signal stats and system health."),
    "broadcast": ("message every user", "/broadcast TEXT — sends TEXT to every active user."),
    "ban": ("ban a user", "/ban TELEGRAM_ID — the bot stops serving them."),
    "unban": ("unban a user", "/unban TELEGRAM_ID"),
    "backtest": ("run a backtest", "/backtest SYMBOL DAYS — starts a backtest and reports when done."),
}


def fmt_number(value: Any, places: int | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        value = Decimal(str(value))
    if isinstance(value, Decimal):
        if places is not None:
            value = value.quantize(Decimal(1).scaleb(-places))
        text = format(value.normalize(), "f") if places is None else format(value, "f")
        return escape(text)
    return escape(value)


def fmt_time(value: datetime | None) -> str:
    return escape(value.strftime("%Y-%m-%d %H:%M UTC")) if value else "—"


def welcome(*, first_name: str, created: bool) -> str:
    hello = (
        f"Welcome, <b>{escape(first_name or 'trader')}</b>!"
        if created
        else f"Welcome back, <b>{escape(first_name or 'trader')}</b>!"
    )
    return (
        f"{hello}\n\nYou will get perpetual-futures signals here, with entry, stop and two targets, and can "
        f"follow them on paper or on your exchange.\n\nStart with /dashboard, or /help for every command.\n\n"
        f"{DISCLAIMER}"
    )


def help_text(*, is_admin: bool, topic: str = "") -> str:
    topic = topic.lstrip("/").lower()
    table = {**COMMANDS, **(ADMIN_COMMANDS if is_admin else {})}
    if topic in table:
        return f"<b>/{escape(topic)}</b>\n{escape(table[topic][1])}"
    lines = ["<b>Help centre</b>", ""]
    lines += [f"/{name} — {escape(summary)}" for name, (summary, _) in COMMANDS.items()]
    if is_admin:
        lines += ["", "<b>Admin</b>"] + [
            f"/{name} — {escape(summary)}" for name, (summary, _) in ADMIN_COMMANDS.items()
        ]
    lines += ["", "/help COMMAND explains one command."]
    return "\n".join(lines)


def unknown_command(command: str, *, is_admin: bool) -> str:
    return f"I don't know the command <code>{escape(command[:64])}</code>.\n\n" + help_text(is_admin=is_admin)


def signal_card(signal) -> str:
    side = "🟢 LONG" if signal.side == "long" else "🔴 SHORT"
    lines = [
        f"<b>{side} {escape(signal.symbol.symbol)}</b>  <i>{escape(signal.timeframe)}, {escape(signal.source)}</i>"
    ]
    if signal.headline:
        headline = escape(signal.headline)
        lines.append(f'📰 <a href="{escape(signal.url)}">{headline}</a>' if signal.url else f"📰 {headline}")
    lines += [
        f"Entry: <code>{fmt_number(signal.entry)}</code>",
        f"Stop: <code>{fmt_number(signal.stop)}</code>",
        f"TP1: <code>{fmt_number(signal.tp1)}</code>   TP2: <code>{fmt_number(signal.tp2)}</code>",
        f"Leverage hint: {escape(leverage_hint(signal))}",
        f"Risk level: <b>{escape(signal.risk_level)}</b>",
    ]
    confirmations = signal.confirmations or []
    if confirmations:
        lines.append(f"Confirmations: {escape(', '.join(str(c) for c in confirmations))} ({len(confirmations)} passed)")
    lines.append(f"Time: {fmt_time(signal.created_at)}")
    return "\n".join(lines)


def leverage_hint(signal) -> str:
    """Leverage such that the stop costs at most ~30% of margin, capped by the market and by risk level."""
    try:
        stop_distance = abs(Decimal(signal.entry) - Decimal(signal.stop)) / Decimal(signal.entry)
    except Exception:
        return "—"
    if stop_distance <= 0:
        return "—"
    cap = {"low": 10, "medium": 5, "high": 3}.get(signal.risk_level, 5)
    cap = min(cap, getattr(signal.symbol, "max_leverage", cap) or cap)
    hint = max(1, min(cap, int(Decimal("0.3") / stop_distance)))
    return f"{hint}x"


OUTCOME_LABELS = {
    "tp1": "🎯 TP1 hit",
    "tp2": "🎯🎯 TP2 hit",
    "sl": "🛑 Stopped out",
    "breakeven": "➖ Break-even",
    "expired": "⌛ Expired",
    "open": "Open",
}


def signal_outcome(signal) -> str:
    label = OUTCOME_LABELS.get(signal.outcome, escape(signal.outcome))
    pnl = (
        ""
        if signal.outcome_pnl_pct is None
        else f" ({'+' if signal.outcome_pnl_pct >= 0 else ''}{fmt_number(signal.outcome_pnl_pct, 2)}%)"
    )
    return f"<b>{label}</b>{pnl}\n{escape(signal.side.upper())} {escape(signal.symbol.symbol)} — closed {fmt_time(signal.closed_at)}"


def position_update(position) -> str:
    """What a position's owner is told when it opens, changes or closes; the net PnL is ``Position.net_pnl``, the
    dashboard's and the API's figure."""
    side = escape(position.side.upper())
    head = f"{escape(position.mode)} {side} {escape(position.symbol.symbol)}"
    if position.status == "closed":
        net = position.net_pnl
        return (
            f"<b>Position closed</b>: {head}\nReason: {escape(position.get_close_reason_display() or '—')}\n"
            f"Net PnL: <b>{'+' if net >= 0 else ''}{fmt_number(net, 2)} USDT</b> (fees {fmt_number(position.fees, 2)},"
            f" funding {fmt_number(position.funding, 2)})"
        )
    if position.status == "failed":
        return f"<b>Position could not be opened</b>: {head}"
    title = "Position opened" if not position.tp1_done else "Position updated: TP1 taken"
    return (
        f"<b>{title}</b>: {head} ×{fmt_number(position.leverage)}\n"
        f"Entry: <code>{fmt_number(position.entry_price)}</code>  Qty: <code>{fmt_number(position.remaining_quantity)}</code>\n"
        f"Stop: <code>{fmt_number(position.stop_price)}</code>  TP1: <code>{fmt_number(position.tp1_price)}</code>"
        f"  TP2: <code>{fmt_number(position.tp2_price)}</code>"
    )


def signals_list(*, recent: list, open_signals: list) -> str:
    lines = ["<b>Open signals</b>"]
    lines += [
        f"• {escape(s.side.upper())} {escape(s.symbol.symbol)} @ <code>{fmt_number(s.entry)}</code> "
        f"({escape(s.risk_level)})"
        for s in open_signals
    ] or ["none"]
    lines += ["", "<b>Recent signals</b>"]
    for s in recent:
        outcome = OUTCOME_LABELS.get(s.outcome, escape(s.outcome))
        pnl = "" if s.outcome_pnl_pct is None else f" {fmt_number(s.outcome_pnl_pct, 2)}%"
        lines.append(f"• {fmt_time(s.created_at)} {escape(s.side.upper())} {escape(s.symbol.symbol)}: {outcome}{pnl}")
    if not recent:
        lines.append("none yet")
    return "\n".join(lines)


def pnl_summary(summary) -> str:
    def signed(value) -> str:
        return f"{'+' if value is not None and value >= 0 else ''}{fmt_number(value, 2)}"

    win_rate = getattr(summary, "win_rate", None)
    period = str(getattr(summary, "period", ""))
    period_text = {"week": "this week", "month": "this month", "all": "all time"}.get(period, period)
    average_r = getattr(summary, "average_r", None)
    win_rate_text = (
        "—" if win_rate is None else f"{fmt_number(Decimal(str(win_rate)) * (100 if win_rate <= 1 else 1), 1)}%"
    )
    return "\n".join(
        [
            f"<b>PnL — {escape(period_text)}</b>",
            f"Trades: {fmt_number(summary.trades)} (wins {fmt_number(summary.wins)}, losses {fmt_number(summary.losses)}, "
            f"win rate {win_rate_text})",
            f"Realised: {signed(summary.realised)} · Unrealised: {signed(summary.unrealised)}",
            f"Fees: {fmt_number(summary.fees, 2)} · Funding: {fmt_number(summary.funding, 2)}",
            f"<b>Net: {signed(summary.net)} USDT</b>",
            f"Average R: {'—' if average_r is None else fmt_number(Decimal(str(average_r)), 2)}  Best: {signed(getattr(summary, 'best', None))}"
            f"  Worst: {signed(getattr(summary, 'worst', None))}",
        ]
    )


def positions_list(positions: list) -> str:
    if not positions:
        return (
            "<b>Open positions</b>\nNone. New signals open positions automatically when auto-trading is on "
            "(/autotrade on)."
        )
    lines = ["<b>Open positions</b>"]
    for p in positions:
        lines.append(
            f"• {escape(p.mode)} {escape(p.side.upper())} {escape(p.symbol.symbol)} ×{fmt_number(p.leverage)} "
            f"qty <code>{fmt_number(p.remaining_quantity)}</code> entry <code>{fmt_number(p.entry_price)}</code> "
            f"stop <code>{fmt_number(p.stop_price)}</code>"
        )
    return "\n".join(lines)


AUTO_TRADING_ACTIONS = {
    "resume": "Send /resume (or tap ▶️ Resume in /settings) to trade again.",
    "switch_on": "Send /autotrade on to switch it on.",
    "wait_operator": "It restarts when the operator resumes it.",
}


def auto_trading_line(status) -> str:
    """'Auto-trading: on' / 'paused (why). <the one action>' / 'off (why). <the one action>'."""
    if status.is_on:
        return "Auto-trading: <b>on</b>"
    why = "" if status.reason == "switched off" else f" ({escape(status.reason)})"
    action = AUTO_TRADING_ACTIONS.get(status.action, "")
    return f"Auto-trading: <b>{escape(status.state)}</b>{why}." + (f" {action}" if action else "")
