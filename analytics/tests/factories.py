import factory
from factory.django import DjangoModelFactory

from accounts.tests.factories import TelegramUserFactory
from analytics.models import BacktestRun, UserActivity


class UserActivityFactory(DjangoModelFactory):
    class Meta:
        model = UserActivity

    user = factory.SubFactory(TelegramUserFactory)
    kind = UserActivity.Kind.COMMAND
    name = "start"


class BacktestRunFactory(DjangoModelFactory):
    class Meta:
        model = BacktestRun

    params = factory.LazyFunction(lambda: {"symbols": ["BTC/USDT:USDT"], "days": 30})
