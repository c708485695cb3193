"""Writes of the trading app that decide and open positions, and the switches of auto-trading.

* deciding and opening: ``position_decide`` (sizing), ``position_prepare`` (risk manager + sizing, the stored pending
  position), ``signal_execute_for_user`` (decide, store, hand to the executor), ``positions_pending_resume`` (the
  sweeper of entries a dead worker left pending);
* switches: the operator's global pause, a user's pause and resume (``user_auto_trading_resume`` restarts the drawdown
  peaks), the paper/live toggle.

The books these write to (paper and live accounts, daily risk state, refusals, funding) are ``trading.ledger``; the
client order ids and order legs are ``trading.orders``; the markets are reached through ``trading.executors``.
Every function takes keyword-only typed arguments and is named ``<entity>_<action>``.

Restart safety of an execution (``signal_execute_for_user``): the decision (risk manager + sizing) and the storing
of the ``Position`` (status ``pending``) with its entry ``Order`` happen in ONE transaction that first locks the
user row and looks for an existing position of this (user, signal) (unique constraint). A worker killed before the
commit leaves nothing (the re-run decides again); killed after it, the re-run finds the pending position and only
executes it (``Executor.open_position`` is idempotent). So a crash neither loses nor doubles a position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import TelegramUser
from accounts.policy import trading_mode_for_user
from accounts.services import (
    preferences_update,
    telegram_user_auto_trading_pause,
    telegram_user_auto_trading_resume,
)
from engine.errors import InvalidParameters, OrderBelowMinimum
from engine.sizing import effective_leverage, position_quantity
from exchanges.errors import ExchangeError
from trading import amounts
from trading.executors.base import Executor
from trading.executors.factory import executor_for
from trading.executors.live import LiveExecutor
from trading.ledger import (
    live_account_observe,
    paper_account_get_or_create,
    paper_account_mark_peak,
    refusal_record,
    user_drawdown_pause,
)
from trading.models import (
    DailyRiskState,
    LiveAccount,
    Order,
    PaperAccount,
    Position,
    TradeRefusal,
    TradingMode,
    TradingSwitch,
)
from trading.orders import client_order_id
from trading.risk import RiskRefusal, risk_check_open
from trading.selectors import account_equity

logger = logging.getLogger(__name__)


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
            equity = account_equity(user=user)
        PaperAccount.objects.filter(pk=account.pk).update(peak_equity=amounts.money(equity))
        DailyRiskState.objects.filter(user=user, loss_limit_hit=True).update(loss_limit_hit=False)


def _live_equity_now(*, user: TelegramUser) -> Decimal | None:
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
