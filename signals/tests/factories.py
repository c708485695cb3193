from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from signals.models import FundingSnapshot, Signal, Symbol


class SymbolFactory(DjangoModelFactory):
    class Meta:
        model = Symbol
        django_get_or_create = ("symbol",)

    symbol = factory.Sequence(lambda n: f"COIN{n}/USDT:USDT")
    base = factory.LazyAttribute(lambda o: o.symbol.split("/")[0])
    tick_size = Decimal("0.0001")
    step_size = Decimal("0.001")
    min_quantity = Decimal("0.001")
    min_notional = Decimal("5")


class SignalFactory(DjangoModelFactory):
    class Meta:
        model = Signal

    symbol = factory.SubFactory(SymbolFactory)
    side = "long"
    source = Signal.Source.TECHNICAL
    entry = Decimal("100")
    stop = Decimal("98")
    tp1 = Decimal("102")
    tp2 = Decimal("104")
    atr = Decimal("1.3333")
    risk_level = "medium"
    confirmations = factory.LazyFunction(lambda: ["trend", "volume"])
    candle_ts = factory.Sequence(lambda n: 1_700_000_000_000 + n * 900_000)
    dedupe_key = factory.LazyAttribute(lambda o: f"{o.source}:{o.symbol.symbol}:{o.side}:{o.candle_ts}")


class FundingSnapshotFactory(DjangoModelFactory):
    class Meta:
        model = FundingSnapshot

    symbol = factory.SubFactory(SymbolFactory)
    exchange = "okx"
    rate = Decimal("0.0001")
    funding_time = factory.Faker("date_time_this_month", tzinfo=__import__("datetime").UTC)
