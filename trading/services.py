"""Writes of the trading app: deciding, opening and closing positions, paper accounts, risk state, funding.

Every function takes keyword-only typed arguments and is named ``<entity>_<action>``.

Restart safety of an execution (``signal_execute_for_user``): the decision (risk manager + sizing) and the storing
of the ``Position`` (status ``pending``) with its entry ``Order`` happen in ONE transaction that first locks the
user row and looks for an existing position of this (user, signal) (unique constraint). A worker killed before the
commit leaves nothing (the re-run decides again); killed after it, the re-run finds the pending position and only
executes it (``Executor.open_position`` is idempotent). So a crash neither loses nor doubles a position.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import TelegramUser
from accounts.policy import trading_mode_for_user
from accounts.services import (
    preferences_update,
    telegram_user_auto_trading_pause,
    telegram_user_auto_trading_resume,
)
from config import events
from engine import pnl
from engine.errors import InvalidParameters, OrderBelowMinimum
from engine.risk import drawdown_breached, peak_after
from engine.sizing import MarketLimits, effective_leverage, position_quantity
from exchanges.errors import ExchangeError
from signals.models import FundingSnapshot
from trading import amounts
from trading.executors.base import Executor, executor_for
from trading.models import (
    DailyRiskState,
    FundingCharge,
    LiveAccount,
    Order,
    PaperAccount,
    Position,
    TradeRefusal,
    TradingMode,
    TradingSwitch,
)
from trading.risk import RiskRefusal, drawdown_detail, risk_check_open

logger = logging.getLogger(__name__)

__all__ = ["Executor", "client_order_id", "executor_for"]

_LEG_RE = re.compile(r"^[a-z0-9]{1,8}$")
CLIENT_ORDER_ID_MAX_LENGTH = 32
HUNDRED = Decimal(100)
FUNDING_INTERVAL = timedelta(hours=8)
FUNDING_LOOKBACK = timedelta(days=1)  # closed positions still checked for funding times they lived through

R = Position.CloseReason
STOP_REASONS = frozenset({R.SL, R.BREAKEVEN, R.TRAILING})
_EXIT_LEG_CODES = {R.SL: "sl", R.TP1: "tp1", R.TP2: "tp2", R.TRAILING: "trl", R.BREAKEVEN: "be", R.EXPIRY: "exp"}


# --- client order ids and order legs ------------------------------------------------------------------------------
def client_order_id(*, signal_id: int, user_id: int, leg: str) -> str:
    """Deterministic client order id of one order leg: ``P<signal>U<user>L<leg>``.

    Ids are decimal digits and the separators upper-case letters, the leg lower-case alphanumerics (``entry``,
    ``sl``, ``tp1``, ``tp2``, ``be``, ``trl``, ``exp``, ``man2``…), so two different (signal, user, leg) never give
    the same id. At most 32 characters of ``[A-Za-z0-9]`` (accepted by OKX, KuCoin, MEXC and Bitunix).
    """
    if signal_id is None or user_id is None or int(signal_id) < 0 or int(user_id) < 0:
        raise ValueError(f"signal_id and user_id must be non-negative integers, got {signal_id!r}, {user_id!r}")
    if not _LEG_RE.match(leg):
        raise ValueError(f"order leg must be 1-8 lower-case letters/digits, got {leg!r}")
    value = f"P{int(signal_id)}U{int(user_id)}L{leg}"
    if len(value) > CLIENT_ORDER_ID_MAX_LENGTH:
        raise ValueError(f"client order id {value!r} is longer than {CLIENT_ORDER_ID_MAX_LENGTH} characters")
    return value


def exit_leg(*, position: Position, reason: str) -> str:
    """Leg code of an exit: one per engine exit reason (each happens at most once per position); manual/flip/
    exchange closes are numbered (``man1``, ``man2``…) since they may repeat."""
    code = _EXIT_LEG_CODES.get(reason)
    if code:
        return code
    prefix = {R.FLIP: "flip", R.EXCHANGE: "exch"}.get(reason, "man")
    n = position.orders.exclude(leg=Order.Leg.ENTRY).count() + 1
    return f"{prefix}{n}"


def order_leg_for_reason(reason: str) -> str:
    return {R.TP1: Order.Leg.TP1, R.TP2: Order.Leg.TP2}.get(
        reason, Order.Leg.STOP_LOSS if reason in STOP_REASONS else Order.Leg.CLOSE
    )


def order_type_for_reason(reason: str) -> str:
    if reason in (R.TP1, R.TP2):
        return Order.Type.TAKE_PROFIT
    return Order.Type.STOP_MARKET if reason in STOP_REASONS else Order.Type.MARKET


def market_limits_of(*, symbol) -> MarketLimits:
    """Precision and minimums of a ``signals.Symbol`` row in ``engine.sizing`` terms."""
    return MarketLimits(
        amount_step=symbol.step_size or None,
        min_qty=symbol.min_quantity or Decimal(0),
        min_notional=symbol.min_notional or Decimal(0),
        max_leverage=Decimal(symbol.max_leverage) if symbol.max_leverage else None,
    )


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


# --- switches -----------------------------------------------------------------------------------------------------
def trading_pause(*, reason: str = "") -> TradingSwitch:
    """Pause auto-trading for everybody (new entries only; open positions keep being monitored)."""
    switch = TradingSwitch.current()
    switch.auto_trading_paused, switch.reason = True, reason[:200]
    switch.save()
    return switch


def trading_resume() -> TradingSwitch:
    switch = TradingSwitch.current()
    switch.auto_trading_paused, switch.reason = False, ""
    switch.save()
    return switch


def user_auto_trading_pause(*, user: TelegramUser, reason: str) -> None:
    telegram_user_auto_trading_pause(user=user, reason=reason)


def user_auto_trading_resume(
    *, user: TelegramUser, equity: Decimal | None = None, live_equity: Decimal | None = None
) -> None:
    """Resume a paused user (admin or the user). The drawdown peaks restart from the current equity, otherwise
    the very next signal would pause again: the paper account's (``equity``, else computed) and, for a user with a
    live account, the exchange's (``live_equity``, else read from the exchange; unreadable: the peak is cleared and
    restarts at the next observation)."""
    live = LiveAccount.objects.filter(user=user).first()
    if live is not None and live_equity is None:
        live_equity = _live_equity_now(user=user)
    with transaction.atomic():
        if live is not None:
            now = timezone.now()
            peak = amounts.money(live_equity) if live_equity is not None else None
            fields = {"peak_equity": peak, "updated_at": now}
            if peak is not None:
                fields.update(equity=peak, observed_at=now)
            LiveAccount.objects.filter(pk=live.pk).update(**fields)
        telegram_user_auto_trading_resume(user=user)
        account = paper_account_get_or_create(user=user)
        if equity is None:
            from trading.selectors import account_equity

            equity = account_equity(user=user)
        PaperAccount.objects.filter(pk=account.pk).update(peak_equity=amounts.money(equity))
        DailyRiskState.objects.filter(user=user, loss_limit_hit=True).update(loss_limit_hit=False)


def _live_equity_now(*, user: TelegramUser) -> Decimal | None:
    from trading.executors.live import LiveExecutor

    try:
        executor = LiveExecutor(user=user, attempts=1)
        return executor.equity() if executor.credential is not None else None
    except ExchangeError as exc:
        logger.warning(
            "resume of user %s: live equity unreadable (%s); the peak restarts at the next pass", user.pk, exc
        )
        return None


def paper_mode_toggle(*, user: TelegramUser) -> bool:
    """``/toggle_paper_mode``: switch paper/live for NEW positions; open positions keep the mode they were opened
    in (``Position.mode``). Returns the new ``paper_mode``. Validated through ``accounts.services``."""
    prefs = preferences_update(user=user, changes={"paper_mode": not user.preferences.paper_mode})
    return prefs.paper_mode


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


# --- deciding and opening -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionDecision:
    quantity: Decimal
    leverage: int
    mode: str


def position_decide(*, user: TelegramUser, signal, executor: Executor) -> PositionDecision:
    """Sizing through ``engine.sizing`` (raises ``OrderBelowMinimum``/``InvalidParameters``)."""
    prefs = user.preferences
    market = executor.market_limits(symbol=signal.symbol)
    leverage = effective_leverage(leverage=prefs.leverage, max_leverage=settings.MAX_LEVERAGE, market=market)
    if prefs.sizing_mode == "risk":
        mode, pct = "risk_pct", prefs.risk_per_trade_pct
    else:
        mode, pct = "balance_pct", prefs.position_size_pct
    quantity = position_quantity(
        balance=executor.balance(),
        entry=signal.entry,
        stop=signal.stop,
        mode=mode,
        pct=pct,
        leverage=leverage,
        max_leverage=settings.MAX_LEVERAGE,
        market=market,
    )
    return PositionDecision(quantity=quantity, leverage=int(leverage), mode=executor.mode)


def _position_store(
    *, user: TelegramUser, signal, decision: PositionDecision, executor: Executor, now: datetime
) -> Position:
    expires_at = signal.expires_at or now + timedelta(hours=settings.TRADING_POSITION_EXPIRY_HOURS)
    position = Position.objects.create(
        user=user,
        signal=signal,
        symbol=signal.symbol,
        side=signal.side,
        mode=decision.mode,
        exchange=executor.exchange,
        status=Position.Status.PENDING,
        leverage=decision.leverage,
        quantity=decision.quantity,
        remaining_quantity=decision.quantity,
        stop_price=signal.stop,
        initial_stop_price=signal.stop,
        tp1_price=signal.tp1,
        tp2_price=signal.tp2,
        atr=signal.atr,
        expires_at=max(expires_at, now + timedelta(minutes=1)),
        created_at=now,
    )
    Order.objects.create(
        position=position,
        client_order_id=client_order_id(signal_id=signal.pk, user_id=user.pk, leg="entry"),
        exchange=executor.exchange,
        leg=Order.Leg.ENTRY,
        type=Order.Type.MARKET,
        side="buy" if signal.side == "long" else "sell",
        quantity=decision.quantity,
    )
    return position


def position_prepare(
    *, user: TelegramUser, signal, executor: Executor, now: datetime
) -> Position | TradeRefusal | None:
    """Decide and store (one transaction, user row locked). Returns the existing or new pending/open ``Position``,
    the ``TradeRefusal`` if the risk manager said no, or ``None`` when the signal was refused before."""
    from trading.selectors import account_equity

    with transaction.atomic():
        # FOR NO KEY UPDATE: excludes the other executions of this user, but not the KEY SHARE lock that the COMMIT
        # of another transaction takes on the user row to check a new row's foreign key (an entry's first
        # DailyRiskState of the day) while it may hold the paper account this one waits for (a deadlock).
        user = (
            TelegramUser.objects.select_for_update(of=("self",), no_key=True)
            .select_related("preferences")
            .get(pk=user.pk)
        )
        existing = Position.objects.filter(user=user, signal=signal).first()
        if existing is not None:
            return existing
        if TradeRefusal.objects.filter(user=user, signal=signal).exists():
            return None
        equity = peak = None
        if executor.mode == TradingMode.PAPER:
            account = paper_account_get_or_create(user=user)
            equity = account_equity(user=user, price_of=getattr(executor, "price_of", None))
            account = paper_account_mark_peak(user=user, equity=equity)
            peak = account.peak_equity
        elif getattr(executor, "equity", None) is not None:  # live: the exchange account's equity and peak
            live = live_account_observe(user=user, exchange=executor.exchange, equity=executor.equity(), at=now)
            equity, peak = live.equity, live.peak_equity
        refusal: RiskRefusal | None = risk_check_open(
            user=user,
            signal=signal,
            equity=equity,
            peak_equity=peak,
            now=now,
            live_equity=executor.balance if executor.mode == TradingMode.LIVE else None,
        )
        if refusal is None:
            try:
                decision = position_decide(user=user, signal=signal, executor=executor)
            except (OrderBelowMinimum, InvalidParameters) as exc:
                refusal = RiskRefusal(TradeRefusal.Reason.SIZE, str(exc))
        if refusal is not None:
            if refusal.reason == TradeRefusal.Reason.DRAWDOWN and executor.mode == TradingMode.LIVE:
                told = user_drawdown_pause(user=user, detail=refusal.detail, at=now)
                return refusal_record(
                    user=user, signal=signal, reason=refusal.reason, detail=refusal.detail, notify=not told
                )
            if refusal.reason == TradeRefusal.Reason.DRAWDOWN:
                user_auto_trading_pause(user=user, reason=f"max drawdown reached: {refusal.detail}")
            if refusal.reason == TradeRefusal.Reason.DAILY_LOSS:
                DailyRiskState.objects.filter(user=user, day=now.astimezone(UTC).date()).update(loss_limit_hit=True)
            return refusal_record(user=user, signal=signal, reason=refusal.reason, detail=refusal.detail)
        return _position_store(user=user, signal=signal, decision=decision, executor=executor, now=now)


def signal_execute_for_user(
    *, user: TelegramUser, signal, executor: Executor | None = None
) -> Position | TradeRefusal | None:
    """Open ``signal`` for one user (risk manager → sizing → stored pending position → executor). Idempotent."""
    mode = trading_mode_for_user(user=user)
    executor = executor or executor_for(user=user, mode=mode)
    now = executor.now() if hasattr(executor, "now") else timezone.now()
    try:
        result = position_prepare(user=user, signal=signal, executor=executor, now=now)
    except IntegrityError:  # a concurrent delivery stored it first
        result = Position.objects.get(user=user, signal=signal)
    if isinstance(result, Position) and result.status == Position.Status.PENDING:
        if result.mode != executor.mode:  # the user toggled the mode between decision and execution
            executor = executor_for(user=user, mode=result.mode)
        result = executor.open_position(position=result)
    return result


def signal_is_tradeable(*, signal, now: datetime) -> bool:
    return signal.status == "open" and (signal.expires_at is None or signal.expires_at > now)


PENDING_RESUME_AFTER = timedelta(seconds=30)


def positions_pending_resume(
    *, now: datetime, older_than: timedelta = PENDING_RESUME_AFTER, executor_factory=None
) -> dict[str, int]:
    """Complete the paper positions a dead worker left ``pending`` (decided and stored, never filled).

    The execution intent's sweeper (``trading.intents``) executes it again too; this sweeper (run by every monitor
    pass) also fills the positions whose intent was recorded as failed. A position whose signal is no longer open
    is not filled any more: it is marked ``failed`` and its entry order cancelled. Idempotent: ``open_position``
    locks the row and does nothing on a position that is not pending any more. Live positions are left to the live
    reconciliation, which looks their entry orders up on the exchange."""
    counts = {"opened": 0, "failed": 0}
    stale = Position.objects.filter(
        status=Position.Status.PENDING, mode=TradingMode.PAPER, created_at__lt=now - older_than
    ).select_related("signal", "symbol", "user__preferences")
    for position in stale:
        if position.signal is not None and not signal_is_tradeable(signal=position.signal, now=now):
            with transaction.atomic():
                updated = Position.objects.filter(pk=position.pk, status=Position.Status.PENDING).update(
                    status=Position.Status.FAILED, updated_at=timezone.now()
                )
                if updated:
                    for order in position.orders.select_for_update().filter(state=Order.State.NEW):
                        order.transition(Order.State.CANCELLED)
                        order.error = "signal no longer open when the interrupted entry was resumed"
                        order.save(update_fields=["state", "error", "updated_at"])
                    counts["failed"] += 1
            continue
        executor = (executor_factory or executor_for)(user=position.user, mode=position.mode)
        try:
            if executor.open_position(position=position).status == Position.Status.OPEN:
                counts["opened"] += 1
        except Exception:
            logger.exception("resuming pending position %s failed", position.pk)
    return counts


def signal_execute(*, signal_id: int, executor_factory=None) -> dict[str, int]:
    """The signal for every user with auto-trading on, in this process: ``trading.intents.signal_execute`` (one
    execution intent per user, each decided once)."""
    from trading import intents

    return intents.signal_execute(signal_id=signal_id, executor_factory=executor_factory)


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
    from trading.market import market_last_price

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
