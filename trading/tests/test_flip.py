"""Auto-flip rules: only flow signals, only with the user's opt-in, only when the risk manager allows the new side."""

from decimal import Decimal

import pytest

from accounts.tests.factories import TelegramUserFactory
from signals.models import Signal
from signals.tests.factories import SignalFactory, SymbolFactory
from trading import services
from trading.flip import position_flip_if_opposed
from trading.models import Order, Position
from trading.tests.factories import PositionFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]

SYMBOL = "BTC/USDT:USDT"


def _user(**prefs):
    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
    values = {"auto_flip": True, "flow_signals": True, "accepted_risk_levels": ["low", "medium", "high"]}
    values.update(prefs)
    for key, value in values.items():
        setattr(user.preferences, key, value)
    user.preferences.save()
    return user


@pytest.fixture
def btc(market):
    market.prices[SYMBOL] = Decimal("100")
    return SymbolFactory(symbol=SYMBOL, base="BTC", tick_size=Decimal("0.1"), step_size=Decimal("0.001"))


def _open_long(user, btc):
    opening = SignalFactory(symbol=btc, side="long", source=Signal.Source.TECHNICAL)
    return PositionFactory(user=user, signal=opening, symbol=btc, side="long")


def _flow_short(btc, **kwargs):
    values = {"symbol": btc, "side": "short", "source": Signal.Source.FLOW, "entry": Decimal("100"),
              "stop": Decimal("103"), "tp1": Decimal("97"), "tp2": Decimal("94"), "risk_level": "medium"}  # fmt: skip
    values.update(kwargs)
    return SignalFactory(**values)


def test_flow_signal_flips_an_opposite_auto_position_when_opted_in(btc, published):
    user = _user(max_open_positions=1)  # the flipped position must not count against the limit
    old = _open_long(user, btc)
    signal = _flow_short(btc)

    closed = position_flip_if_opposed(user=user, signal=signal)

    assert closed is not None and closed.pk == old.pk
    old.refresh_from_db()
    assert old.status == Position.Status.CLOSED and old.close_reason == Position.CloseReason.FLIP
    close_order = old.orders.get(leg=Order.Leg.CLOSE)
    assert close_order.side == "sell" and close_order.reduce_only and close_order.client_order_id.endswith("Lflip1")
    assert ("position.closed", {"position_id": old.pk}) in published

    # the caller then opens the other side as for any signal: the risk manager now allows it
    opened = services.signal_execute_for_user(user=user, signal=signal)
    assert isinstance(opened, Position) and opened.side == "short" and opened.status == Position.Status.OPEN

    # a redelivered task finds nothing left to flip
    assert position_flip_if_opposed(user=user, signal=signal) is None
    assert Order.objects.filter(position=old, leg=Order.Leg.CLOSE).count() == 1


def test_no_flip_without_the_opt_in(btc):
    user = _user(auto_flip=False)
    old = _open_long(user, btc)
    assert position_flip_if_opposed(user=user, signal=_flow_short(btc)) is None
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN


def test_no_flip_when_auto_trading_is_off(btc):
    user = _user()
    user.auto_trading_enabled = False
    user.save()
    old = _open_long(user, btc)
    assert position_flip_if_opposed(user=user, signal=_flow_short(btc)) is None
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN


@pytest.mark.parametrize(
    ("prefs", "signal_kwargs", "pause"),
    [
        ({"accepted_risk_levels": ["low"]}, {}, False),  # the new side's risk level is not accepted
        ({"flow_signals": False}, {}, False),  # order-flow signals switched off
        ({}, {}, True),  # the operator paused auto-trading
    ],
    ids=["risk-level", "flow-off", "global-pause"],
)
def test_no_flip_when_the_risk_manager_refuses_the_new_side(btc, prefs, signal_kwargs, pause):
    user = _user(**prefs)
    old = _open_long(user, btc)
    if pause:
        services.trading_pause(reason="maintenance")
    try:
        assert position_flip_if_opposed(user=user, signal=_flow_short(btc, **signal_kwargs)) is None
    finally:
        services.trading_resume()
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN and not old.orders.filter(leg=Order.Leg.CLOSE).exists()


def test_risk_check_still_counts_the_other_open_positions(btc, market):
    user = _user(max_open_positions=2, correlation_filter=False)
    old = _open_long(user, btc)
    eth = SymbolFactory(symbol="ETH/USDT:USDT", base="ETH", tick_size=Decimal("0.01"))
    market.prices["ETH/USDT:USDT"] = Decimal("50")
    PositionFactory(user=user, signal=SignalFactory(symbol=eth), symbol=eth, side="long")
    PositionFactory(user=user, signal=SignalFactory(symbol=eth, side="short"), symbol=eth, side="short")

    assert position_flip_if_opposed(user=user, signal=_flow_short(btc)) is None  # 2 others open: limit reached
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN


def test_technical_or_same_side_signals_never_flip(btc):
    user = _user()
    old = _open_long(user, btc)
    technical_short = SignalFactory(symbol=btc, side="short", source=Signal.Source.TECHNICAL)
    news_short = SignalFactory(symbol=btc, side="short", source=Signal.Source.NEWS)
    flow_long = SignalFactory(symbol=btc, side="long", source=Signal.Source.FLOW)
    for signal in (technical_short, news_short, flow_long):
        assert position_flip_if_opposed(user=user, signal=signal) is None
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN


def test_manual_positions_are_not_flipped(btc):
    user = _user()
    manual = PositionFactory(user=user, signal=None, symbol=btc, side="long")
    assert position_flip_if_opposed(user=user, signal=_flow_short(btc)) is None
    manual.refresh_from_db()
    assert manual.status == Position.Status.OPEN


# -- the execution hook: close, then open the other side, per user ---------------------------------------------------
def test_execute_with_flip_flips_only_opted_in_users_and_opens_the_new_side(btc, published):
    from trading.intents import signal_execute

    opted_in, opted_out = _user(max_open_positions=1), _user(auto_flip=False, max_open_positions=1)
    old_in = _open_long(opted_in, btc)
    old_out = PositionFactory(user=opted_out, signal=old_in.signal, symbol=btc, side="long")
    signal = _flow_short(btc)

    counts = signal_execute(signal_id=signal.pk)

    assert counts["flipped"] == 1 and counts["opened"] == 1 and counts["refused"] == 1
    old_in.refresh_from_db()
    old_out.refresh_from_db()
    assert old_in.status == Position.Status.CLOSED and old_in.close_reason == Position.CloseReason.FLIP
    new = Position.objects.get(user=opted_in, signal=signal)
    assert new.side == "short" and new.status == Position.Status.OPEN
    # without the opt-in the long stays and the opposite signal is refused by the risk manager (limit reached)
    assert old_out.status == Position.Status.OPEN
    assert not Position.objects.filter(user=opted_out, signal=signal).exists()
    closed_event = published.index(("position.closed", {"position_id": old_in.pk}))
    assert closed_event < published.index(("position.opened", {"position_id": new.pk}))  # close, then open

    # redelivery of signal.created: nothing flipped or opened twice
    again = signal_execute(signal_id=signal.pk)
    assert again["flipped"] == 0 and again["opened"] == 1
    assert Position.objects.filter(user=opted_in).count() == 2


def test_execute_with_flip_leaves_positions_alone_for_other_sources_and_expired_signals(btc, market):
    from datetime import timedelta

    from trading.intents import signal_execute

    user = _user(max_open_positions=1)
    old = _open_long(user, btc)
    technical = SignalFactory(symbol=btc, side="short", source=Signal.Source.TECHNICAL, entry=Decimal("100"),
                              stop=Decimal("103"), tp1=Decimal("97"), tp2=Decimal("94"))  # fmt: skip
    expired = _flow_short(btc, expires_at=market.clock - timedelta(minutes=1))

    assert signal_execute(signal_id=technical.pk)["flipped"] == 0
    assert signal_execute(signal_id=expired.pk) == {
        "opened": 0, "refused": 0, "skipped": 1, "failed": 0, "flipped": 0
    }  # fmt: skip
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN


def test_no_flip_when_the_new_side_would_be_below_the_market_minimum(btc):
    user = _user()
    old = _open_long(user, btc)
    btc.min_notional = Decimal("1000000")  # far above what the paper balance can size
    btc.save()
    assert position_flip_if_opposed(user=user, signal=_flow_short(btc)) is None
    old.refresh_from_db()
    assert old.status == Position.Status.OPEN
