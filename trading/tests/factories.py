from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from trading.models import Order, PaperAccount, Position


class PaperAccountFactory(DjangoModelFactory):
    class Meta:
        model = PaperAccount
        django_get_or_create = ("user",)

    user = factory.SubFactory(TelegramUserFactory)
    starting_balance = Decimal("10000")
    balance = Decimal("10000")
    peak_equity = Decimal("10000")


class PositionFactory(DjangoModelFactory):
    class Meta:
        model = Position

    user = factory.SubFactory(TelegramUserFactory)
    signal = factory.SubFactory(SignalFactory)
    symbol = factory.SelfAttribute("signal.symbol")
    side = "long"
    mode = "paper"
    exchange = "paper"
    status = Position.Status.OPEN
    leverage = 5
    quantity = Decimal("1.5")
    remaining_quantity = Decimal("1.5")
    entry_price = Decimal("100")
    stop_price = Decimal("98")
    initial_stop_price = Decimal("98")
    tp1_price = Decimal("102")
    tp2_price = Decimal("104")


class OrderFactory(DjangoModelFactory):
    class Meta:
        model = Order

    position = factory.SubFactory(PositionFactory)
    client_order_id = factory.Sequence(lambda n: f"ps-test-{n:08d}")
    exchange = "paper"
    leg = Order.Leg.ENTRY
    type = Order.Type.MARKET
    side = "buy"
    quantity = Decimal("1.5")
