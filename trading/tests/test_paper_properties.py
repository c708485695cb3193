"""Hypothesis properties of the paper account as stored in the database, after any sequence of real service calls
(opens through the risk manager and sizing, partial and full closes as maker or taker, funding charges):

- the equity identity: balance + unrealised = start + realised + unrealised − fees − funding, with every term summed
  from the stored rows (fills and funding charges), and ``pnl_summary("all")`` / ``equity_curve`` agreeing with it;
- each position's totals equal the sums of its own fills and charges; the remaining quantity never goes negative
  and is always a multiple of the market step;
- fees are always counted (every fill pays a positive fee) and funding always moves the balance.

Each example runs in a transaction rolled back at its end, so examples never see each other's rows.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.tests.factories import TelegramUserFactory
from engine import pnl
from signals.tests.factories import SignalFactory, SymbolFactory
from trading import ledger, orders, selectors, services
from trading.executors.paper import PaperExecutor
from trading.models import Fill, FundingCharge, PaperAccount, Position
from trading.tests.paper_fixtures import T0

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]

prices = st.decimals(min_value=D("50"), max_value=D("150"), places=2)
event = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(["long", "short"]), prices),
    st.tuples(
        st.just("close"),
        st.integers(0, 5),
        st.sampled_from(["1", "0.5", "0.3"]),
        prices,
        st.sampled_from(["manual", "tp1"]),
    ),
    st.tuples(
        st.just("funding"),
        st.integers(0, 5),
        st.decimals(min_value=D("-0.003"), max_value=D("0.003"), places=5),
        prices,
    ),
)


class _Rollback(Exception):
    pass


def _run(events, marks):
    user = TelegramUserFactory(auto_trading_enabled=True)
    prefs = user.preferences
    prefs.max_open_positions, prefs.correlation_filter, prefs.accepted_risk_levels = (
        50,
        False,
        ["low", "medium", "high"],
    )
    prefs.save()
    ledger.paper_account_get_or_create(user=user)
    clock = {"now": T0}
    quote = {"price": D("100")}
    executor = PaperExecutor(user=user, price_of=lambda symbol: quote["price"], clock=lambda: clock["now"])
    opened: list[Position] = []
    for i, ev in enumerate(events):
        clock["now"] = T0 + timedelta(minutes=i)
        if ev[0] == "open":
            _, side, price = ev
            sign = 1 if side == "long" else -1
            signal = SignalFactory(
                symbol=SymbolFactory(),
                side=side,
                entry=price,
                stop=price - sign * 2,
                tp1=price + sign * 2,
                tp2=price + sign * 4,
            )
            quote["price"] = price
            result = services.signal_execute_for_user(user=user, signal=signal, executor=executor)
            if isinstance(result, Position):
                opened.append(result)
        elif ev[0] == "close" and opened:
            _, index, fraction, price, reason = ev
            position = Position.objects.get(pk=opened[index % len(opened)].pk)
            if position.status != "open":
                continue
            step = position.symbol.step_size
            qty = None if fraction == "1" else (position.remaining_quantity * D(fraction) // step) * step
            if qty == 0:
                continue
            executor.close_position(position=position, reason=reason, quantity=qty, price=price)
        elif ev[0] == "funding" and opened:
            _, index, rate, mark = ev
            position = opened[index % len(opened)]
            balance = PaperAccount.objects.get(user=user).balance
            charge = ledger.funding_charge_position(
                position=position, funding_time=T0 + timedelta(hours=8 * (i + 1)), rate=rate, mark=mark
            )
            if charge is not None:  # funding always counted: the balance moved by exactly the charge
                assert PaperAccount.objects.get(user=user).balance == balance - charge.amount
    return user, opened


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(events=st.lists(event, min_size=1, max_size=14), marks=prices)
def test_equity_identity_after_any_sequence_of_paper_events(events, marks):
    try:
        with transaction.atomic():
            _check(events, marks)
            raise _Rollback
    except _Rollback:
        pass


def _check(events, mark):
    user, opened = _run(events, mark)
    account = PaperAccount.objects.get(user=user)
    fills = Fill.objects.filter(position__user=user)
    charges = FundingCharge.objects.filter(position__user=user)
    # SQLite sums decimal columns in floating point (PostgreSQL exactly): back to the columns' 8 decimal places
    exact = D("0.00000001")
    realised = (fills.aggregate(s=Sum("realised_pnl"))["s"] or D(0)).quantize(exact)
    fees = (fills.aggregate(s=Sum("fee"))["s"] or D(0)).quantize(exact)
    funding = (charges.aggregate(s=Sum("amount"))["s"] or D(0)).quantize(exact)
    open_positions = list(Position.objects.filter(user=user, status="open"))
    unrealised = sum(
        (
            pnl.unrealised_pnl(side=p.side, entry=p.entry_price, mark=mark, quantity=p.remaining_quantity)
            for p in open_positions
        ),
        D(0),
    )
    # the identity, every term from the stored rows
    assert account.balance + unrealised == account.starting_balance + realised + unrealised - fees - funding
    # fees always counted: one positive fee per fill
    assert all(f.fee > 0 for f in fills)
    assert fills.count() >= len(opened)
    for p in Position.objects.filter(user=user):
        own = p.fills.all()
        assert p.realised_pnl == sum((f.realised_pnl for f in own), D(0))
        assert p.fees == sum((f.fee for f in own), D(0))
        assert p.funding == sum((c.amount for c in p.funding_charges.all()), D(0))
        exited = sum((f.quantity for f in own if f.order.leg != "entry"), D(0))
        assert p.remaining_quantity == p.quantity - exited >= 0
        assert p.remaining_quantity % p.symbol.step_size == 0
        assert (p.status == "closed") == (p.remaining_quantity == 0)
    # what /pnl, the dashboard and the demo read agrees with the account
    summary = selectors.pnl_summary(user=user, period="all", now=T0 + timedelta(days=30), price_of=lambda s: mark)
    assert summary.net == account.balance - account.starting_balance
    assert summary.unrealised == unrealised
    assert (summary.realised, summary.fees, summary.funding) == (realised, fees, funding)
    curve = selectors.equity_curve(user=user)
    assert curve[-1].equity == account.balance
    assert selectors.account_equity(user=user, price_of=lambda s: mark) == account.balance + unrealised


class _SizingExecutor:
    """What ``position_decide`` asks an executor: the cash balance and the market's limits."""

    mode = "paper"

    def __init__(self, balance):
        self._balance = balance

    def balance(self):
        return self._balance

    def market_limits(self, *, symbol):
        return orders.market_limits_of(symbol=symbol)


@settings(max_examples=200, deadline=None)
@given(
    balance=st.decimals(min_value=D("10"), max_value=D("1000000"), places=2),
    entry=st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4),
    stop_fraction=st.decimals(min_value=D("0.002"), max_value=D("0.3"), places=3),
    side=st.sampled_from(["long", "short"]),
    sizing_mode=st.sampled_from(["percent", "risk"]),
    position_size_pct=st.decimals(min_value=D("0.1"), max_value=D("100"), places=1),
    risk_per_trade_pct=st.decimals(min_value=D("0.05"), max_value=D("10"), places=2),
    user_leverage=st.integers(1, 125),
    symbol_max_leverage=st.integers(1, 125),
    step=st.sampled_from([D("1"), D("0.1"), D("0.001"), D("0.00001")]),
)
def test_service_sizing_rounds_down_and_never_exceeds_any_leverage_cap(
    balance,
    entry,
    stop_fraction,
    side,
    sizing_mode,
    position_size_pct,
    risk_per_trade_pct,
    user_leverage,
    symbol_max_leverage,
    step,
):
    """``trading.services.position_decide`` (what every open goes through): the quantity is a multiple of the
    market step, the notional never exceeds balance x the smallest of the user's, the platform's and the market's
    leverage, and a risk-sized position never loses more than the risk budget at its stop."""
    from types import SimpleNamespace

    from django.conf import settings as django_settings

    from engine.errors import OrderBelowMinimum

    stop = entry * (1 - stop_fraction) if side == "long" else entry * (1 + stop_fraction)
    symbol = SimpleNamespace(step_size=step, min_quantity=D(0), min_notional=D(0), max_leverage=symbol_max_leverage)
    prefs = SimpleNamespace(
        leverage=user_leverage,
        sizing_mode=sizing_mode,
        position_size_pct=position_size_pct,
        risk_per_trade_pct=risk_per_trade_pct,
    )
    user = SimpleNamespace(preferences=prefs)
    signal = SimpleNamespace(symbol=symbol, entry=entry, stop=stop, side=side)
    try:
        decision = services.position_decide(user=user, signal=signal, executor=_SizingExecutor(balance))
    except OrderBelowMinimum:
        return  # less than one step: refused (recorded as a "size" refusal), never rounded up
    cap = min(user_leverage, django_settings.MAX_LEVERAGE, symbol_max_leverage)
    assert decision.leverage == cap
    assert decision.quantity > 0 and decision.quantity % step == 0
    assert decision.quantity * entry <= balance * cap
    assert (decision.quantity + step) * entry > min(
        balance * cap,
        balance * position_size_pct / 100 * cap
        if sizing_mode == "percent"
        else balance * risk_per_trade_pct / 100 / abs(entry - stop) * entry,
    )  # rounded DOWN: one more step would exceed the size
    if sizing_mode == "risk":
        assert decision.quantity * abs(entry - stop) <= balance * risk_per_trade_pct / 100
