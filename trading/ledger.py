"""The books of the trading app: writes that record money and refusals, below the executors that call them.

* the paper account (balance, peak equity) and the daily risk state (the day's realised cash and opened positions,
  which the daily loss limit reads); what paper auto-trading needs (``paper_auto_trading_requirement``, registered
  with ``accounts.policy`` at start-up);
* the live account (the exchange account's observed equity and its peak) and the maximum-drawdown pause of a user;
* refusals: why a signal opened nothing, recorded once per (user, signal) and told once;
* funding: the 8-hourly payments a paper position lived through, charged once per funding time.

Every function takes keyword-only typed arguments and is named ``<entity>_<action>``. The executors
(``trading.executors``), ``trading.services`` and ``trading.reconcile`` call these; nothing here decides a position
or reaches a market.
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum

from accounts.models import TelegramUser
from accounts.services import telegram_user_auto_trading_pause
from config import events
from engine import pnl
from engine.risk import drawdown_breached, peak_after
from signals.models import FundingSnapshot
from trading import amounts
from trading.market import market_last_price
from trading.models import (
    DailyRiskState,
    FundingCharge,
    LiveAccount,
    Order,
    PaperAccount,
    Position,
    TradeRefusal,
    TradingMode,
)
from trading.risk import drawdown_detail

logger = logging.getLogger(__name__)

FUNDING_INTERVAL = timedelta(hours=8)
FUNDING_LOOKBACK = timedelta(days=1)  # closed positions still checked for funding times they lived through


# --- paper account and daily risk state ---------------------------------------------------------------------------
def paper_account_get_or_create(*, user: TelegramUser) -> PaperAccount:
    start = settings.PAPER_STARTING_BALANCE
    account, _ = PaperAccount.objects.get_or_create(
        user=user, defaults={"starting_balance": start, "balance": start, "peak_equity": start}
    )
    return account


def paper_auto_trading_requirement(*, user: TelegramUser, preferences) -> str | None:
    """What paper auto-trading needs (registered with ``accounts.policy`` at start-up): a paper account with money.
    Switching auto-trading on opens the account (with ``PAPER_STARTING_BALANCE``) when the user has none yet."""
    if not preferences.paper_mode:
        return None
    account = paper_account_get_or_create(user=user)
    if account.balance <= 0:
        return f"your paper account has no balance left ({account.balance:.2f} USDT)"
    return None


def paper_account_apply(*, user: TelegramUser, cash: Decimal, at: datetime, opened: bool = False) -> PaperAccount:
    """Move the paper balance by ``cash`` (realised PnL − fees − funding of one event) and book it on the user's
    UTC day (the daily loss limit counts fees and funding too; ``opened``: the event is an entry). Call inside the
    event's transaction."""
    cash = amounts.money(cash)
    paper_account_get_or_create(user=user)
    account = PaperAccount.objects.select_for_update().get(user=user)
    before = account.balance
    account.balance = before + cash
    account.save(update_fields=["balance", "updated_at"])
    daily_risk_record(user=user, at=at, pnl_change=cash, start_equity=before, opened=opened)
    return account


def paper_account_mark_peak(*, user: TelegramUser, equity: Decimal) -> PaperAccount:
    """Raise the peak equity the drawdown rule measures from (never lowers it)."""
    account = paper_account_get_or_create(user=user)
    equity = amounts.money(equity)
    if equity > account.peak_equity:
        PaperAccount.objects.filter(pk=account.pk, peak_equity__lt=equity).update(peak_equity=equity)
        account.refresh_from_db()
    return account


def daily_risk_record(
    *, user: TelegramUser, at: datetime, pnl_change: Decimal, start_equity: Decimal, opened: bool = False
) -> DailyRiskState:
    """Book a cash event (and, with ``opened``, one more position) on the user's UTC day; ``start_equity`` seeds the
    day's row the first time (the daily loss limit is a percentage of it). Live executors call it with the
    exchange equity for their fills so the daily loss limit covers live trading too."""
    day = at.astimezone(UTC).date()
    state, _ = DailyRiskState.objects.get_or_create(user=user, day=day, defaults={"start_equity": start_equity})
    DailyRiskState.objects.filter(pk=state.pk).update(
        realised_pnl=F("realised_pnl") + pnl_change, positions_opened=F("positions_opened") + int(opened)
    )
    state.refresh_from_db()
    return state


# --- live account (drawdown of the exchange account) --------------------------------------------------------------
def live_account_observe(*, user: TelegramUser, exchange: str, equity: Decimal, at: datetime) -> LiveAccount:
    """Store an observed equity of the user's exchange account (wallet balance + unrealised PnL) and raise the peak
    the drawdown rule measures from (``engine.risk.peak_after``: never lowered; a peak cleared by a resume, or
    measured on another exchange, restarts from this equity)."""
    equity = amounts.money(equity)
    with transaction.atomic():
        LiveAccount.objects.get_or_create(user=user, defaults={"exchange": exchange})
        account = LiveAccount.objects.select_for_update().get(user=user)
        if account.exchange != exchange:
            account.exchange, account.peak_equity = exchange, None
        account.peak_equity = peak_after(account.peak_equity, equity)
        account.equity, account.observed_at = equity, at
        account.save()
    return account


def user_drawdown_pause(*, user: TelegramUser, detail: str, at: datetime) -> bool:
    """Pause the user's auto-trading for the maximum drawdown and tell them (``user.notify``, one per user and UTC
    day). Only a user not paused yet is paused and told (a concurrent pass cannot notify twice); returns whether
    this call paused them."""
    reason = f"max drawdown reached: {detail}"[:200]
    if not telegram_user_auto_trading_pause(user=user, reason=reason, only_if_running=True):
        return False
    logger.warning("auto-trading paused for user %s: %s", user.pk, reason)
    text = (
        "⚠️ <b>Auto-trading paused: maximum drawdown</b>\n"
        f"Your exchange account's {html.escape(detail)}.\n"
        "New entries are refused; open positions keep their stops. Send /resume to trade again "
        "(the drawdown is then measured from your equity at that moment)."
    )
    day = at.astimezone(UTC).date().isoformat()
    events.publish("user.notify", user_id=user.pk, text=text, dedupe_key=f"drawdown:{user.pk}:{day}")
    return True


def live_drawdown_check(*, user: TelegramUser, exchange: str, equity: Decimal, at: datetime) -> LiveAccount:
    """A reconcile pass observed the live equity: store it and, when it is ``max_drawdown_pct`` or more below the
    peak, pause the user's auto-trading (if they trade live) before the next signal arrives."""
    account = live_account_observe(user=user, exchange=exchange, equity=equity, at=at)
    prefs = user.preferences
    if (
        user.auto_trading_enabled
        and not prefs.paper_mode
        and drawdown_breached(account.peak_equity, account.equity, prefs.max_drawdown_pct)
    ):
        detail = drawdown_detail(
            equity=account.equity, peak_equity=account.peak_equity, max_drawdown_pct=prefs.max_drawdown_pct
        )
        user_drawdown_pause(user=user, detail=detail, at=at)
    return account


# --- refusals -----------------------------------------------------------------------------------------------------
# Refusals whose detail (accounts.policy) already says it all: the label would only repeat it ("A position on this
# symbol is already open: you already have a position on …").
SELF_EXPLAINED_REFUSALS = frozenset(
    {
        "symbol_busy",
        "source_disabled",
        "risk_level",
        "muted_symbol",
        "banned",
        "auto_trading_off",
        "no_exchange",
        "correlated",
    }
)


def refusal_sentence(*, reason: str, detail: str) -> str:
    """Why a signal opened nothing, said once: the detail alone when it explains itself, else "label: detail"."""
    label = TradeRefusal.Reason(reason).label
    detail = detail.strip()
    if not detail:
        return f"{label}."
    if reason in SELF_EXPLAINED_REFUSALS:
        return detail[0].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
    return f"{label}: {detail}"


def refusal_record(*, user: TelegramUser, signal, reason: str, detail: str, notify: bool = True) -> TradeRefusal:
    """Record a refusal once per (user, signal) and tell the user once (``user.notify`` with a dedupe key).
    ``notify=False``: the user was told already (the live drawdown pause message); recorded as notified."""
    refusal, created = TradeRefusal.objects.get_or_create(
        user=user, signal=signal, defaults={"reason": reason, "detail": detail[:300], "notified": not notify}
    )
    if created and notify:
        text = (
            f"⛔ Not opened: <b>{html.escape(signal.side.upper())} {html.escape(signal.symbol.symbol)}</b>\n"
            f"{html.escape(refusal_sentence(reason=reason, detail=detail))}"
        )
        events.publish("user.notify", user_id=user.pk, text=text, dedupe_key=f"refusal:{user.pk}:{signal.pk}")
        TradeRefusal.objects.filter(pk=refusal.pk).update(notified=True)
        refusal.notified = True
    return refusal


# --- funding ------------------------------------------------------------------------------------------------------
def funding_times_between(start: datetime, end: datetime) -> list[datetime]:
    """The 8-hourly funding times (00, 08, 16 UTC) in ``(start, end]``."""
    start = start.astimezone(UTC)
    first = start.replace(minute=0, second=0, microsecond=0, hour=(start.hour // 8) * 8)
    times, t = [], first
    while t <= end:
        if t > start:
            times.append(t)
        t += FUNDING_INTERVAL
    return times


def position_quantity_at(*, position: Position, at: datetime) -> Decimal:
    """Quantity ``position`` held at ``at``: its entry quantity less the exit fills filled at or before ``at``."""
    if position.opened_at is None or position.opened_at >= at:
        return Decimal(0)
    exited = position.fills.exclude(order__leg=Order.Leg.ENTRY).filter(filled_at__lte=at).aggregate(
        total=Sum("quantity")
    )["total"] or Decimal(0)
    return max(position.quantity - exited, Decimal(0))


def funding_charge_position(
    *, position: Position, funding_time: datetime, rate: Decimal, mark: Decimal
) -> FundingCharge | None:
    """Charge one funding payment (once per funding time; longs pay a positive rate) on the quantity the position
    held at ``funding_time`` — also when it closed after that time but before the charge ran (a monitor pass that
    applied the exit first must not make the funding disappear)."""
    with transaction.atomic():
        position = Position.objects.select_for_update().get(pk=position.pk)
        held = position.status == Position.Status.OPEN or (
            position.status == Position.Status.CLOSED
            and position.closed_at is not None
            and position.closed_at > funding_time
        )
        if not held:
            return None
        if FundingCharge.objects.filter(position=position, funding_time=funding_time).exists():
            return None
        quantity = position_quantity_at(position=position, at=funding_time)
        if quantity <= 0:
            return None
        amount = amounts.money(pnl.funding_payment(side=position.side, mark=mark, quantity=quantity, rate=rate))
        charge = FundingCharge.objects.create(
            position=position,
            funding_time=funding_time,
            rate=rate,
            mark_price=amounts.price(mark),
            quantity=quantity,
            amount=amount,
        )
        position.funding += amount
        position.save(update_fields=["funding", "updated_at"])
        if position.mode == TradingMode.PAPER:
            paper_account_apply(user=position.user, cash=-amount, at=funding_time)
        return charge


def funding_charge_due(*, now: datetime, price_of=None, rate_of=None) -> int:
    """Charge every paper position the funding times it lived through (idempotent): open positions since they
    opened, and positions closed in the last ``FUNDING_LOOKBACK`` for the times before their close.

    The rate of a funding time is the ``FundingSnapshot`` of that symbol and time (the market-data exchange's first,
    else any exchange's); without one, in replay, the market data's published rate (``rate_of(symbol)``, the
    replay's bundled funding history) or else ``settings.PAPER_FUNDING_RATE``; live, nothing is invented."""

    recently_closed = Q(status=Position.Status.CLOSED, closed_at__gt=now - FUNDING_LOOKBACK)
    positions = Position.objects.filter(
        Q(status=Position.Status.OPEN) | recently_closed, mode=TradingMode.PAPER, opened_at__isnull=False
    ).select_related("symbol")
    return sum(
        funding_settle_position(position=position, now=now, price_of=price_of, rate_of=rate_of)
        for position in positions
    )


def funding_settle_position(
    *, position: Position, now: datetime, price_of=None, rate_of=None, closing: bool = False
) -> int:
    """Charge one paper position the funding times it lived through up to ``now`` (before its close, if closed;
    before ``now`` when it is ``closing`` at ``now``); idempotent. The paper executor calls it right before a close, so the "Position closed" message, the dashboard
    and the API read the same settled PnL; ``funding_charge_due`` calls it for every position. Returns the charges
    made. Rates: see ``funding_charge_due``."""
    if position.mode != TradingMode.PAPER or position.opened_at is None:
        return 0
    until = min(now, position.closed_at) if position.closed_at else now
    due = [
        t
        for t in funding_times_between(position.opened_at, until)
        if (position.closed_at is None or t < position.closed_at) and not (closing and t >= now)
    ]
    if not due:
        return 0  # most positions never live through a funding time: no query for them
    price_of = price_of or market_last_price
    fallback = (
        Decimal(settings.PAPER_FUNDING_RATE)
        if settings.PAPER_FUNDING_RATE and settings.MARKET_DATA_SOURCE == "replay"
        else None
    )
    done = set(position.funding_charges.values_list("funding_time", flat=True))
    charged = 0
    for t in due:
        if t in done:
            continue
        snaps = list(FundingSnapshot.objects.filter(symbol=position.symbol, funding_time=t))
        snaps.sort(key=lambda s: s.exchange != settings.MARKET_DATA_EXCHANGE)
        if snaps:
            rate, mark = snaps[0].rate, snaps[0].mark_price
        elif fallback is not None:
            published = rate_of(position.symbol.symbol) if rate_of is not None else None
            rate, mark = (Decimal(published) if published is not None else fallback), None
        else:
            continue
        if mark is None:
            mark = Decimal(price_of(position.symbol.symbol))
        if funding_charge_position(position=position, funding_time=t, rate=rate, mark=mark) is not None:
            charged += 1
    return charged
