"""Auto-flip: a strong order-flow signal against a user's open auto position closes it so the new side can open.

``position_flip_if_opposed(user=, signal=)`` is called by the execution intent (``trading.intents``) for each user
BEFORE the new position is prepared. It closes the user's OPEN auto positions (opened from a signal) on the signal's
symbol and the other side, with reason ``flip``, only when all of these hold:

* the signal is an order-flow signal (``source == "flow"``; technical and news signals never flip a position);
* the user opted in: ``preferences.auto_flip`` and auto-trading on;
* the risk manager (``trading.risk.risk_check_open``) would allow the new side **once the old position is closed**:
  the check runs inside a savepoint in which the positions to flip are marked closed, then rolled back, so the
  flipped position itself does not count against ``max_open_positions`` or the correlation filter while every other
  rule (pause, risk level, muted symbol, daily loss, drawdown, source switch) still applies;
* the new side can be sized (``trading.services.position_decide``: market minimum quantity/notional and step), so a
  position is never closed for a replacement that would then be refused for its size.

It returns the closed position (the last one when several were open), or ``None`` when nothing was flipped; the
caller then opens the new side as for any signal. Idempotent: once closed, the old position is no longer open, so a
redelivered task finds nothing to flip.

The hook into execution is the execution intent (``trading.intents.execution_intent_execute``): for a flow signal
still tradeable, it flips first; the new side is then opened by the unchanged ``signal_execute_for_user`` (risk
manager, sizing, executor) in the same task, so a flip is always "close, then open the other side" for one user, never
two racing consumers. ``trading.intents.signal_execute(signal_id=)`` runs every intent of a signal in this process.

This module sits above ``trading.services`` (it sizes the new side with ``position_decide``) and below
``trading.intents`` (which calls it); it never imports the intents.
"""

from __future__ import annotations

import logging

from django.db import transaction

from accounts.models import TelegramUser
from engine.errors import InvalidParameters, OrderBelowMinimum
from trading.executors.base import Executor
from trading.executors.factory import executor_for
from trading.market import market_now
from trading.models import PaperAccount, Position, TradeRefusal, TradingMode
from trading.risk import RiskRefusal, risk_check_open
from trading.selectors import account_equity
from trading.services import position_decide

logger = logging.getLogger(__name__)

FLOW_SOURCE = "flow"
OPPOSITE = {"long": "short", "short": "long"}


def position_flip_if_opposed(*, user, signal, executor: Executor | None = None) -> Position | None:
    """Close the user's opposite open auto position(s) on ``signal.symbol`` for a flow signal, if allowed."""
    if signal.source != FLOW_SOURCE or signal.side not in OPPOSITE:
        return None
    prefs = user.preferences
    if not prefs.auto_flip or not user.auto_trading_enabled:
        return None
    opposed = list(
        Position.objects.filter(
            user=user,
            symbol_id=signal.symbol_id,
            side=OPPOSITE[signal.side],
            status=Position.Status.OPEN,
            signal__isnull=False,
        )
        .select_related("symbol")
        .order_by("pk")
    )
    if not opposed:
        return None
    refusal = _risk_check_after_closing(user=user, signal=signal, positions=opposed, executor=executor)
    if refusal is not None:
        logger.info(
            "flip refused for user %s on %s %s: %s (%s)",
            user.pk,
            signal.side,
            signal.symbol.symbol,
            refusal.reason,
            refusal.detail,
        )
        return None
    closed = None
    for position in opposed:
        position_executor = executor if executor is not None and executor.mode == position.mode else None
        position_executor = position_executor or executor_for(user=user, mode=position.mode)
        closed = position_executor.close_position(position=position, reason=Position.CloseReason.FLIP)
        logger.info("flipped: user %s closed %s for flow signal %s", user.pk, position, signal.pk)
    return closed


def _risk_check_after_closing(
    *, user, signal, positions: list[Position], executor: Executor | None
) -> RiskRefusal | None:
    """``risk_check_open`` for the new side as if ``positions`` were already closed (savepoint, rolled back)."""
    new_mode = TradingMode.PAPER if user.preferences.paper_mode else TradingMode.LIVE
    now = executor.now() if executor is not None and hasattr(executor, "now") else market_now()
    with transaction.atomic():
        # FOR NO KEY UPDATE, as position_prepare: never blocks the foreign-key checks of other transactions (deadlock)
        locked = (
            TelegramUser.objects.select_for_update(of=("self",), no_key=True)
            .select_related("preferences")
            .get(pk=user.pk)
        )
        equity = peak = None
        if new_mode == TradingMode.PAPER:
            equity = account_equity(user=locked, price_of=getattr(executor, "price_of", None))
            account = PaperAccount.objects.filter(user=locked).first()
            peak = max(account.peak_equity, equity) if account is not None else None
        savepoint = transaction.savepoint()
        try:
            Position.objects.filter(pk__in=[p.pk for p in positions]).update(status=Position.Status.CLOSED)
            refusal = risk_check_open(user=locked, signal=signal, equity=equity, peak_equity=peak, now=now)
        finally:
            transaction.savepoint_rollback(savepoint)
    if refusal is not None:
        return refusal
    return _size_check(user=user, signal=signal, mode=new_mode, executor=executor)


def _size_check(*, user, signal, mode: str, executor: Executor | None) -> RiskRefusal | None:
    """The new side must also be sizeable (market minimum, step): never close a position that cannot be replaced."""
    new_executor = executor if executor is not None and executor.mode == mode else executor_for(user=user, mode=mode)
    try:
        position_decide(user=user, signal=signal, executor=new_executor)
    except (OrderBelowMinimum, InvalidParameters) as exc:
        return RiskRefusal(TradeRefusal.Reason.SIZE, str(exc))
    return None
