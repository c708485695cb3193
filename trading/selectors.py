"""Reads of the trading app: positions, PnL per period, equity curve, the demo PnL table.

``/pnl``, the dashboard, the REST API and ``make demo`` all read these, so they show the same numbers.

Definitions (all Decimal USDT):
- realised: gross price PnL of the exit fills in the period; fees: every fill's fee in the period (entries too);
  funding: funding charged in the period (positive = paid); net = realised − fees − funding.
- trades/wins/losses/win_rate/average_r/best/worst: positions CLOSED in the period, judged by their net PnL
  (realised − fees − funding of the whole position); win_rate is a fraction 0..1; R = net / (|entry − initial
  stop| × quantity) (``engine.pnl.r_multiple``).
- unrealised: open positions now, at the market's last price.
- Periods: "today", "week" (from Monday), "month" and "all", in the user's timezone (``TelegramUser.timezone``,
  UTC when unset or unknown); "now" is the market data's clock (the replay clock in the demo).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.policy import AutoTradingStatus, auto_trading_status
from engine import pnl
from trading.market import PriceSource, market_last_price, market_now
from trading.models import DailyRiskState, Fill, FundingCharge, PaperAccount, Position, TradingMode, TradingSwitch

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
PERIODS = ("today", "week", "month", "all")
MONEY_PLACES = Decimal("0.00000001")  # MoneyField decimal places
OPEN_STATUSES = (Position.Status.PENDING, Position.Status.OPEN)


def daily_risk_state_today(*, user) -> DailyRiskState | None:
    """The user's daily-risk row of today on the market clock (UTC day), or None."""
    try:
        now = market_now()
    except Exception:  # the market clock is unavailable (no replay data): the wall clock is today as well
        now = timezone.now()
    return DailyRiskState.objects.filter(user=user, day=now.astimezone(UTC).date()).first()


def auto_trading_status_of(*, user) -> AutoTradingStatus:
    """On, paused or off, why, and the one action that turns it back on (``accounts.policy.auto_trading_status``
    with the trading facts: today's daily loss state and the operator's switch). The bot's /status and /settings
    and the web dashboard show this."""
    day_state = daily_risk_state_today(user=user)
    switch = TradingSwitch.current()
    global_reason = (switch.reason or "no reason given") if switch.auto_trading_paused else ""
    return auto_trading_status(
        user=user, daily_loss_hit=bool(day_state and day_state.loss_limit_hit), global_pause_reason=global_reason
    )


def position_list_open(*, user) -> QuerySet[Position]:
    return Position.objects.filter(user=user, status__in=OPEN_STATUSES).select_related("symbol").order_by("created_at")


def position_unrealised_pnl(*, position: Position, mark: Decimal) -> Decimal:
    if position.status != Position.Status.OPEN or position.entry_price is None:
        return ZERO
    return pnl.unrealised_pnl(
        side=position.side, entry=position.entry_price, mark=mark, quantity=position.remaining_quantity
    )


def position_r_multiple(*, position: Position) -> Decimal | None:
    if position.entry_price is None or position.entry_price == position.initial_stop_price or not position.quantity:
        return None
    return pnl.r_multiple(
        pnl=position.net_pnl, entry=position.entry_price, stop=position.initial_stop_price, quantity=position.quantity
    )


def _mark(symbol: str, price_of: PriceSource | None) -> Decimal | None:
    try:
        return Decimal((price_of or market_last_price)(symbol))
    except Exception:  # market data down: unrealised unknown, counted as 0 rather than failing /pnl
        logger.warning("no price for %s; unrealised PnL counted as 0", symbol, exc_info=True)
        return None


def unrealised_total(*, positions: Iterable[Position], price_of: PriceSource | None = None) -> Decimal:
    total = ZERO
    for position in positions:
        mark = _mark(position.symbol.symbol, price_of)
        if mark is not None:
            total += position_unrealised_pnl(position=position, mark=mark)
    return total


def account_equity(*, user, price_of: PriceSource | None = None) -> Decimal:
    """Paper equity: cash balance + unrealised PnL of the open paper positions."""
    account = PaperAccount.objects.filter(user=user).first()
    if account is None:
        from django.conf import settings

        return settings.PAPER_STARTING_BALANCE
    positions = Position.objects.filter(user=user, mode=TradingMode.PAPER, status=Position.Status.OPEN).select_related(
        "symbol"
    )
    return account.balance + unrealised_total(positions=positions, price_of=price_of)


def user_zone(user) -> ZoneInfo:
    try:
        return ZoneInfo(user.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def period_bounds(*, period: str, now: datetime, zone: ZoneInfo) -> tuple[datetime | None, datetime]:
    """[start, end) of ``period`` containing ``now`` in ``zone`` (start None for "all"), as UTC datetimes."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "all":
        return None, now
    if period == "today":
        start = midnight
    elif period == "week":
        start = midnight - timedelta(days=local.weekday())
    else:
        start = midnight.replace(day=1)
    return start.astimezone(UTC), now


@dataclass(frozen=True)
class PnlSummary:
    period: str
    start: datetime | None
    end: datetime
    trades: int
    wins: int
    losses: int
    win_rate: Decimal  # fraction 0..1
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    funding: Decimal
    net: Decimal
    average_r: Decimal | None
    best: Decimal | None
    worst: Decimal | None


def pnl_summary(
    *,
    user,
    period: str = "today",
    now: datetime | None = None,
    price_of: PriceSource | None = None,
    mode: str | None = None,
    utc: bool = False,
) -> PnlSummary:
    """PnL of ``user`` over ``period`` in the user's timezone (``utc=True``: UTC days/weeks/months whatever the
    user's timezone). ``mode`` "paper"/"live" restricts to one kind of position (default: both)."""
    now = now or market_now()
    start, end = period_bounds(period=period, now=now, zone=ZoneInfo("UTC") if utc else user_zone(user))
    positions = Position.objects.filter(user=user)
    if mode:
        positions = positions.filter(mode=mode)
    fills = Fill.objects.filter(position__in=positions, filled_at__lte=end)
    charges = FundingCharge.objects.filter(position__in=positions, funding_time__lte=end)
    closed = positions.filter(status=Position.Status.CLOSED, closed_at__lte=end)
    if start is not None:
        fills = fills.filter(filled_at__gte=start)
        charges = charges.filter(funding_time__gte=start)
        closed = closed.filter(closed_at__gte=start)
    sums = fills.aggregate(realised=Sum("realised_pnl"), fees=Sum("fee"))
    # exact to the money columns' 8 places (SQLite sums decimals in floating point; PostgreSQL exactly)
    realised, fees = (sums["realised"] or ZERO).quantize(MONEY_PLACES), (sums["fees"] or ZERO).quantize(MONEY_PLACES)
    funding = (charges.aggregate(total=Sum("amount"))["total"] or ZERO).quantize(MONEY_PLACES)
    nets = [p.net_pnl for p in closed]
    rs = [r for r in (position_r_multiple(position=p) for p in closed) if r is not None]
    wins = sum(1 for n in nets if n > 0)
    losses = sum(1 for n in nets if n < 0)
    open_positions = positions.filter(status=Position.Status.OPEN).select_related("symbol")
    return PnlSummary(
        period=period,
        start=start,
        end=end,
        trades=len(nets),
        wins=wins,
        losses=losses,
        win_rate=(Decimal(wins) / Decimal(len(nets))) if nets else ZERO,
        realised=realised,
        unrealised=unrealised_total(positions=open_positions, price_of=price_of),
        fees=fees,
        funding=funding,
        net=realised - fees - funding,
        average_r=(sum(rs, ZERO) / len(rs)) if rs else None,
        best=max(nets) if nets else None,
        worst=min(nets) if nets else None,
    )


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: Decimal


def equity_curve(*, user) -> list[EquityPoint]:
    """Realised paper equity after every cash event (fill: realised − fee; funding charge), starting from the
    starting balance. The last point equals the paper account's balance."""
    account = PaperAccount.objects.filter(user=user).first()
    if account is None:
        return []
    flows: list[tuple[datetime, int, Decimal]] = [
        (f.filled_at, f.pk, f.realised_pnl - f.fee)
        for f in Fill.objects.filter(position__user=user, position__mode=TradingMode.PAPER).only(
            "filled_at", "realised_pnl", "fee"
        )
    ]
    flows += [
        (c.funding_time, c.pk, -c.amount)
        for c in FundingCharge.objects.filter(position__user=user, position__mode=TradingMode.PAPER).only(
            "funding_time", "amount"
        )
    ]
    flows.sort(key=lambda row: (row[0], row[1]))
    equity = account.starting_balance
    # the starting point: the account's creation, or just the first cash event when that came earlier on the
    # market clock (a replay books its fills at the replayed times)
    start_at = min(account.created_at, flows[0][0]) if flows else account.created_at
    points = [EquityPoint(at=start_at, equity=equity)]
    for at, _, cash in flows:
        equity += cash
        points.append(EquityPoint(at=at, equity=equity))
    return points


@dataclass(frozen=True)
class PnlRow:
    user: str
    trades: int
    wins: int
    win_rate: Decimal
    fees: Decimal
    funding: Decimal
    net: Decimal
    open_positions: int
    balance: Decimal | None


def pnl_table(
    *, users, period: str = "all", now: datetime | None = None, price_of: PriceSource | None = None
) -> list[PnlRow]:
    """One row per user from ``pnl_summary`` (the numbers of ``/pnl``): trades, win rate, net PnL after fees."""
    rows = []
    for user in users:
        s = pnl_summary(user=user, period=period, now=now, price_of=price_of)
        account = PaperAccount.objects.filter(user=user).first()
        rows.append(
            PnlRow(
                user=str(user),
                trades=s.trades,
                wins=s.wins,
                win_rate=s.win_rate,
                fees=s.fees,
                funding=s.funding,
                net=s.net,
                open_positions=position_list_open(user=user).count(),
                balance=account.balance if account else None,
            )
        )
    return rows


def pnl_table_text(rows: list[PnlRow]) -> str:
    """Plain-text table of ``pnl_table`` rows for the demo's console output."""
    header = f"{'user':<20} {'trades':>6} {'wins':>5} {'win rate':>8} {'fees':>10} {'funding':>9} {'net PnL':>11} {'open':>5} {'balance':>12}"
    lines = [header, "-" * len(header)]
    for r in rows:
        balance = f"{r.balance:>12.2f}" if r.balance is not None else f"{'-':>12}"
        lines.append(
            f"{r.user:<20} {r.trades:>6} {r.wins:>5} {r.win_rate * 100:>7.1f}% {r.fees:>10.2f} {r.funding:>9.2f} "
            f"{r.net:>11.2f} {r.open_positions:>5} {balance}"
        )
    return "\n".join(lines)
