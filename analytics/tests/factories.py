import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from accounts.tests.factories import TelegramUserFactory
from analytics.models import BacktestRun, Heartbeat, UserActivity


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


class HeartbeatFactory(DjangoModelFactory):
    class Meta:
        model = Heartbeat
        django_get_or_create = ("name",)

    name = "worker"
    beat_at = factory.LazyFunction(timezone.now)
