"""Paper trading safety regressions: no entry beyond the stop or target (refused, reason recorded); the "Position
closed" message reads the same settled PnL as the dashboard (funding settled before the close)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from telegram_bridge import texts
from trading import ledger, services
from trading.executors.paper import PaperExecutor
from trading.models import FundingCharge, Order, Position, TradeRefusal
from trading.selectors import pnl_summary
from trading.tests.paper_fixtures import T0

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]


def trader():
    return TelegramUserFactory(auto_trading_enabled=True)


@pytest.mark.parametrize(
    ("side", "entry", "stop", "tp1", "tp2", "market_price", "why"),
    [
        # the recorded case: a SHORT filled at 0.0903048 with its stop at 0.0890598 (the signal had hit it)
        ("short", "0.0880", "0.0890598", "0.0870", "0.0860", "0.0902", "beyond the stop 0.0890598"),
        ("long", "100", "98", "102", "104", "97.9", "beyond the stop 98"),
        ("long", "100", "98", "102", "104", "102.5", "beyond the target 102"),
        ("short", "100", "102", "98", "96", "97.5", "beyond the target 98"),
    ],
)
def test_paper_entry_beyond_the_stop_or_target_is_refused_with_its_reason(
    market, published, side, entry, stop, tp1, tp2, market_price, why
):
    user = trader()
    signal = SignalFactory(side=side, entry=Decimal(entry), stop=Decimal(stop), tp1=Decimal(tp1), tp2=Decimal(tp2))
    signal.symbol.tick_size = Decimal("0.0000001")
    signal.symbol.save()
    market.prices[signal.symbol.symbol] = Decimal(market_price)
    position = services.signal_execute_for_user(user=user, signal=signal)
    assert position.status == Position.Status.FAILED and position.entry_price is None
    entry_order = position.orders.get(leg=Order.Leg.ENTRY)
    assert entry_order.state == Order.State.CANCELLED and why in entry_order.error and not entry_order.fills.exists()
    refusal = TradeRefusal.objects.get(user=user, signal=signal)
    assert refusal.reason == TradeRefusal.Reason.SIGNAL_CLOSED and why in refusal.detail
    assert any(event == "user.notify" and why in payload["text"] for event, payload in published)
    assert not any(event == "position.opened" for event, _ in published)


def test_paper_entry_inside_the_levels_still_opens(market):
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100.2")
    assert services.signal_execute_for_user(user=trader(), signal=signal).status == Position.Status.OPEN


def test_position_closed_message_and_dashboard_show_the_same_pnl_after_funding(market, monkeypatch):
    user = trader()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    position = services.signal_execute_for_user(user=user, signal=signal)
    market.clock = T0 + timedelta(hours=5)  # past the 16:00 UTC funding time, not yet charged by any monitor pass
    market.prices[signal.symbol.symbol] = Decimal("103")
    messages = []

    def message_at_close(event, **payload):  # the message rendered when the close is announced, as the bridge does
        if event == "position.closed":
            closed = Position.objects.get(pk=payload["position_id"])
            net = closed.net_pnl
            messages.append((texts.position_update(closed), net))

    monkeypatch.setattr("config.events.publish", message_at_close)
    position = PaperExecutor(user=user).close_position(position=position, reason=Position.CloseReason.MANUAL)
    assert position.status == Position.Status.CLOSED
    assert (
        FundingCharge.objects.filter(position=position, funding_time=T0.replace(hour=16)).count() == 1
    )  # settled first
    ((text, net_at_close),) = messages
    position.refresh_from_db()
    dashboard_net = pnl_summary(user=user, period="all").net
    assert net_at_close == position.net_pnl == dashboard_net
    assert f"+{net_at_close:.2f} USDT" in text
    assert ledger.funding_charge_due(now=market.clock + timedelta(hours=1)) == 0  # nothing booked after the message
