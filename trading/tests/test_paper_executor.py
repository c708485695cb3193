from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import ExchangeCredentialFactory, SubscriptionFactory, TelegramUserFactory
from signals.tests.factories import FundingSnapshotFactory, SignalFactory
from trading import ledger, services
from trading.executors.factory import executor_for
from trading.executors.paper import PaperExecutor
from trading.models import DailyRiskState, FundingCharge, Order, PaperAccount, Position
from trading.tests.paper_fixtures import T0

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]


def _user(**prefs):
    user = TelegramUserFactory(auto_trading_enabled=True)
    for k, v in prefs.items():
        setattr(user.preferences, k, v)
    user.preferences.save()
    return user


def test_executor_for_paper_is_a_paper_executor():
    user = _user()
    executor = executor_for(user=user, mode="paper")
    assert isinstance(executor, PaperExecutor)
    assert executor.mode == "paper" and executor.exchange == "paper"


def test_open_fills_at_next_price_with_slippage_and_taker_fee(market, published):
    user = _user()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100.5")
    position = services.signal_execute_for_user(user=user, signal=signal)
    # 5 % of 10 000 = 500 margin x 5 leverage = 2 500 notional at the signal entry 100 -> 25 units
    assert position.status == Position.Status.OPEN
    assert position.quantity == Decimal("25") and position.leverage == 5
    # next price 100.5, slippage 0.1 % against a buyer, rounded UP to the 0.0001 tick
    assert position.entry_price == Decimal("100.6005")
    fee = Decimal("100.6005") * 25 * Decimal("0.0005")
    assert position.fees == fee.quantize(Decimal("1e-8"))
    order = position.orders.get()
    assert order.client_order_id == f"P{signal.pk}U{user.pk}Lentry"
    assert order.state == Order.State.FILLED and order.filled_quantity == 25
    fill = order.fills.get()
    assert fill.price == Decimal("100.6005") and fill.fee == position.fees and fill.liquidity == "taker"
    assert PaperAccount.objects.get(user=user).balance == Decimal("10000") - position.fees
    day = DailyRiskState.objects.get(user=user, day=T0.date())
    assert (day.start_equity, day.realised_pnl, day.positions_opened) == (Decimal("10000"), -position.fees, 1)
    assert ("position.opened", {"position_id": position.pk}) in published


def test_entry_order_is_stored_before_the_fill(market, monkeypatch):
    """The decision commits the pending position and its entry order; only then does the executor fill it."""
    user = _user()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    seen = {}

    def spy(self, *, position):
        seen["status"] = Position.objects.get(pk=position.pk).status
        seen["orders"] = list(Order.objects.filter(position=position).values_list("client_order_id", "state"))
        raise RuntimeError("stop here")

    monkeypatch.setattr(PaperExecutor, "open_position", spy)
    with pytest.raises(RuntimeError):
        services.signal_execute_for_user(user=user, signal=signal)
    assert seen == {"status": "pending", "orders": [(f"P{signal.pk}U{user.pk}Lentry", "new")]}


def test_close_partial_then_rest_books_pnl_fees_and_balance(market, published):
    user = _user()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    position = services.signal_execute_for_user(user=user, signal=signal)
    entry = position.entry_price  # 100.1 (slippage)
    assert entry == Decimal("100.1")
    executor = PaperExecutor(user=user)
    position = executor.close_position(position=position, reason="tp1", quantity=Decimal("12.5"), price=Decimal("102"))
    # maker exit at the level, no slippage
    assert position.remaining_quantity == Decimal("12.5") and position.tp1_done
    assert position.realised_pnl == (Decimal("102") - entry) * Decimal("12.5")
    # the same exit again is a no-op (idempotent by client order id)
    again = executor.close_position(position=position, reason="tp1", quantity=Decimal("12.5"), price=Decimal("102"))
    assert again.remaining_quantity == Decimal("12.5")
    position = executor.close_position(position=position, reason="sl", price=Decimal("100.1"))
    assert position.status == Position.Status.CLOSED and position.close_reason == "sl"
    sl_fill = position.fills.get(order__leg="sl")
    assert sl_fill.price == Decimal("100.1") * (1 - Decimal("0.001"))  # sold below the stop by the slippage
    assert sl_fill.liquidity == "taker"
    fees = sum(f.fee for f in position.fills.all())
    realised = sum(f.realised_pnl for f in position.fills.all())
    assert position.fees == fees and position.realised_pnl == realised
    account = PaperAccount.objects.get(user=user)
    assert account.balance == Decimal("10000") + realised - fees
    assert [e for e, _ in published] == ["position.opened", "position.updated", "position.closed"]


def test_short_close_buys_back_above_the_reference(market):
    user = _user()
    signal = SignalFactory(
        side="short", entry=Decimal("100"), stop=Decimal("102"), tp1=Decimal("98"), tp2=Decimal("96")
    )
    market.prices[signal.symbol.symbol] = Decimal("100")
    position = services.signal_execute_for_user(user=user, signal=signal)
    assert position.entry_price == Decimal("99.9")  # a seller receives less
    position = PaperExecutor(user=user).close_position(position=position, reason="manual", price=Decimal("99"))
    assert position.fills.get(order__leg="close").price == Decimal("99.099")
    assert position.orders.get(leg="close").client_order_id.endswith("Lman1")
    assert position.realised_pnl == (Decimal("99.9") - Decimal("99.099")) * position.quantity


def test_funding_charged_once_per_8h_from_snapshots_else_replay_rate(market, settings):
    user = _user()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    market.clock = T0  # 12:00 UTC
    position = services.signal_execute_for_user(user=user, signal=signal)
    balance = PaperAccount.objects.get(user=user).balance
    FundingSnapshotFactory(
        symbol=signal.symbol,
        exchange=settings.MARKET_DATA_EXCHANGE,
        rate=Decimal("0.0003"),
        funding_time=T0.replace(hour=16),
        mark_price=Decimal("101"),
    )
    now = T0 + timedelta(hours=13)  # 01:00 next day: funding times 16:00 and 00:00
    assert ledger.funding_charge_due(now=now) == 2
    assert ledger.funding_charge_due(now=now) == 0  # idempotent
    charges = list(FundingCharge.objects.filter(position=position).order_by("funding_time"))
    assert [c.rate for c in charges] == [Decimal("0.0003"), Decimal("0.0001")]
    assert charges[0].amount == Decimal("101") * position.quantity * Decimal("0.0003")  # longs pay a positive rate
    assert charges[1].amount == Decimal("100") * position.quantity * Decimal("0.0001")  # replay rate at last price
    position.refresh_from_db()
    assert position.funding == sum(c.amount for c in charges)
    assert PaperAccount.objects.get(user=user).balance == balance - position.funding


def test_funding_not_invented_live(market, settings):
    settings.MARKET_DATA_SOURCE = "live"
    user = _user()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    services.signal_execute_for_user(user=user, signal=signal)
    assert ledger.funding_charge_due(now=T0 + timedelta(hours=30)) == 0


def test_leverage_capped_by_platform_and_symbol(market, settings):
    settings.MAX_LEVERAGE = 10
    user = _user(leverage=50)
    signal = SignalFactory(symbol__max_leverage=8)
    market.prices[signal.symbol.symbol] = Decimal("100")
    position = services.signal_execute_for_user(user=user, signal=signal)
    assert position.leverage == 8
    assert position.quantity == Decimal("10000") * Decimal("0.05") * 8 / 100


def test_risk_sizing_rounds_down_to_the_step(market):
    user = _user(sizing_mode="risk", risk_per_trade_pct=Decimal("1"))
    signal = SignalFactory(entry=Decimal("100"), stop=Decimal("97"), symbol__step_size=Decimal("0.01"))
    market.prices[signal.symbol.symbol] = Decimal("100")
    position = services.signal_execute_for_user(user=user, signal=signal)
    # 1 % of 10 000 = 100 USDT at risk over a 3 USDT stop distance = 33.333… -> 33.33
    assert position.quantity == Decimal("33.33")


def test_toggle_paper_mode_only_affects_new_positions(market):
    user = _user()
    signal = SignalFactory()
    market.prices[signal.symbol.symbol] = Decimal("100")
    position = services.signal_execute_for_user(user=user, signal=signal)
    ExchangeCredentialFactory(user=user)  # live mode needs a connected, verified exchange and a plan that has it
    SubscriptionFactory(user=user, source="admin", external_id=None)
    assert services.paper_mode_toggle(user=user) is False
    user.refresh_from_db()
    assert user.preferences.paper_mode is False
    position.refresh_from_db()
    assert position.mode == "paper" and position.status == "open"
    assert services.paper_mode_toggle(user=user) is True
