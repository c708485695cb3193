"""The risk manager: every rule checked before a position is opened, in a fixed order, first refusal wins.

The operator's global switch comes first; then the user policy (``accounts.policy.position_allowed_for_user``:
banned, auto-trading off or paused, signal source, risk level, muted symbol, live mode without an exchange, one
position per symbol, max open positions, correlation), the same rules the broadcast and the live push apply; then
the money rules that need the account's state: the daily loss limit and the maximum drawdown.

``risk_check_open(...)`` returns ``None`` (allowed) or a ``RiskRefusal(reason, detail)``; the caller records it
(``trading.ledger.refusal_record``: once per user and signal, notified once). The drawdown rule (math in
``engine.risk``) also pauses the user's auto-trading (``auto_trading_paused_reason``) until an admin or the user
resumes it (``trading.services.user_auto_trading_resume``, admin action on paper and live accounts). Its equity and
peak are the paper account's for paper entries and the exchange account's (``LiveAccount``, wallet balance +
unrealised PnL, observed on live entries and reconcile passes) for live entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal

from django.db.models import Sum

from accounts.policy import position_allowed_for_user
from engine.risk import drawdown_breached, drawdown_pct
from trading.models import DailyRiskState, Fill, FundingCharge, Position, TradeRefusal, TradingMode, TradingSwitch

HUNDRED = Decimal(100)
ZERO = Decimal(0)
Reason = TradeRefusal.Reason


@dataclass(frozen=True)
class RiskRefusal:
    reason: str  # TradeRefusal.Reason value
    detail: str


def entry_beyond_levels(*, side: str, price: Decimal, stop: Decimal | None, target: Decimal | None) -> str:
    """Why an entry at ``price`` must not be made: the market is already at or beyond the stop (the signal has hit
    it) or beyond the first target (the move is over). "" when the entry is fine."""
    long = side == "long"
    if stop is not None and (price <= stop if long else price >= stop):
        return f"the price {price.normalize():f} is already beyond the stop {stop.normalize():f}"
    if target is not None and (price >= target if long else price <= target):
        return f"the price {price.normalize():f} is already beyond the target {target.normalize():f}"
    return ""


def live_day_pnl(*, user, now: datetime) -> Decimal:
    """Net PnL of the user's LIVE positions on ``now``'s UTC day: realised − fees of the day's fills − funding."""
    start = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
    fills = Fill.objects.filter(
        position__user=user, position__mode=TradingMode.LIVE, filled_at__gte=start, filled_at__lte=now
    ).aggregate(realised=Sum("realised_pnl"), fees=Sum("fee"))
    funding = FundingCharge.objects.filter(
        position__user=user, position__mode=TradingMode.LIVE, funding_time__gte=start, funding_time__lte=now
    ).aggregate(total=Sum("amount"))
    return (fills["realised"] or ZERO) - (fills["fees"] or ZERO) - (funding["total"] or ZERO)


def risk_check_open(
    *,
    user,
    signal,
    equity: Decimal | None,
    peak_equity: Decimal | None,
    now: datetime,
    live_equity: Callable[[], Decimal] | None = None,
) -> RiskRefusal | None:
    """Check every rule for opening ``signal`` for ``user``. ``equity``/``peak_equity`` feed the drawdown rule (None:
    not known for this account, rule skipped). ``live_equity`` (a live open: the exchange balance, asked only when
    the day's live PnL is a loss) extends the daily loss limit to live trading, measured on the fills stored for
    the live positions. Reads only; the drawdown pause is applied by the caller."""
    prefs = user.preferences
    switch = TradingSwitch.current()
    if switch.auto_trading_paused:
        return RiskRefusal(Reason.GLOBAL_PAUSE, switch.reason or "auto-trading is paused by the operator")
    open_symbols = list(
        Position.objects.filter(user=user, status__in=[Position.Status.PENDING, Position.Status.OPEN]).values_list(
            "symbol__symbol", flat=True
        )
    )
    refused = position_allowed_for_user(user=user, signal=signal, open_symbols=open_symbols)
    if refused is not None:
        return RiskRefusal(refused.reason, refused.detail)
    day_state = DailyRiskState.objects.filter(user=user, day=now.date()).first()
    if day_state is not None:
        limit = day_state.start_equity * prefs.daily_loss_limit_pct / HUNDRED
        if day_state.loss_limit_hit or -day_state.realised_pnl >= limit:
            return RiskRefusal(
                Reason.DAILY_LOSS,
                f"today's loss {-day_state.realised_pnl:.2f} USDT reached the daily limit "
                f"({prefs.daily_loss_limit_pct:g}% = {limit:.2f} USDT); new entries resume tomorrow (UTC)",
            )
    if live_equity is not None:
        day_pnl = live_day_pnl(user=user, now=now)
        if day_pnl < 0:
            start_equity = Decimal(live_equity()) - day_pnl
            limit = start_equity * prefs.daily_loss_limit_pct / HUNDRED
            if -day_pnl >= limit:
                return RiskRefusal(
                    Reason.DAILY_LOSS,
                    f"today's live loss {-day_pnl:.2f} USDT reached the daily limit "
                    f"({prefs.daily_loss_limit_pct:g}% = {limit:.2f} USDT); new entries resume tomorrow (UTC)",
                )
    if equity is not None and drawdown_breached(peak_equity, equity, prefs.max_drawdown_pct):
        return RiskRefusal(
            Reason.DRAWDOWN,
            drawdown_detail(equity=equity, peak_equity=peak_equity, max_drawdown_pct=prefs.max_drawdown_pct),
        )
    return None


def drawdown_detail(*, equity: Decimal, peak_equity: Decimal, max_drawdown_pct: Decimal) -> str:
    return (
        f"equity {equity:.2f} is {drawdown_pct(peak_equity, equity):.1f}% below its peak {peak_equity:.2f} "
        f"(limit {max_drawdown_pct:g}%); auto-trading paused until you resume it"
    )
