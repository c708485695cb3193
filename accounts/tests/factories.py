from decimal import Decimal

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from accounts.models import (
    ApiSecrets,
    ExchangeCredential,
    Feature,
    Payment,
    Plan,
    Subscription,
    TelegramUser,
    UserPreferences,
    WebhookEvent,
)

USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


class TelegramUserFactory(DjangoModelFactory):
    class Meta:
        model = TelegramUser
        skip_postgeneration_save = True

    telegram_id = factory.Sequence(lambda n: 100_000 + n)
    username = factory.Sequence(lambda n: f"trader{n}")
    first_name = factory.Faker("first_name")
    preferences = factory.RelatedFactory("accounts.tests.factories.UserPreferencesFactory", factory_related_name="user")

    @factory.post_generation
    def subscribed(self, create, extracted, **kwargs):
        """``TelegramUserFactory(subscribed=True)``: a current Pro subscription (every paid feature unlocked)."""
        if create and extracted:
            SubscriptionFactory(user=self)


class UserPreferencesFactory(DjangoModelFactory):
    class Meta:
        model = UserPreferences
        django_get_or_create = ("user",)

    user = factory.SubFactory(TelegramUserFactory, preferences=None)
    accepted_risk_levels = factory.LazyFunction(lambda: ["low", "medium", "high"])


class PlanFactory(DjangoModelFactory):
    """Pro: every feature, 30 days, $29 on Whop (plan_pro) or 29 USDC (exact base units) by Solana Pay."""

    class Meta:
        model = Plan
        django_get_or_create = ("code",)

    code = "pro"
    name = "Pro"
    period_days = 30
    features = factory.LazyFunction(lambda: list(Feature.values))
    price_usd = Decimal("29")
    whop_plan_id = factory.LazyAttribute(lambda plan: f"plan_{plan.code}")
    solana_amount = 29_000_000
    solana_mint = USDC_MINT
    solana_decimals = 6


class SubscriptionFactory(DjangoModelFactory):
    class Meta:
        model = Subscription

    user = factory.SubFactory(TelegramUserFactory)
    plan = factory.SubFactory(PlanFactory)
    source = Subscription.Source.WHOP
    status = Subscription.Status.ACTIVE
    external_id = factory.Sequence(lambda n: f"mem_{n:06d}")


class PaymentFactory(DjangoModelFactory):
    class Meta:
        model = Payment

    user = factory.SubFactory(TelegramUserFactory)
    plan = factory.SubFactory(PlanFactory)
    gateway = Payment.Gateway.WHOP
    status = Payment.Status.PAID
    amount_base_units = 2900
    decimals = 2
    currency = "USD"
    external_id = factory.Sequence(lambda n: f"pay_{n:08d}")


class ExchangeCredentialFactory(DjangoModelFactory):
    class Meta:
        model = ExchangeCredential
        skip_postgeneration_save = True

    user = factory.SubFactory(TelegramUserFactory)
    exchange = "okx"
    validated_at = factory.LazyFunction(timezone.now)  # keys verified against the exchange, as /connect stores them

    @factory.post_generation
    def secrets(obj, create, extracted, **kwargs):
        obj.set_secrets(extracted or ApiSecrets(api_key="key-abcdef-1234", secret="secret-xyz", passphrase="pass"))
        if create:
            obj.save()


class WebhookEventFactory(DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    provider = WebhookEvent.Provider.WHOP
    event_id = factory.Sequence(lambda n: f"msg_{n:08d}")
    event_type = "membership.activated"
    payload = factory.LazyFunction(lambda: {"type": "membership.activated", "data": {"id": "mem_1"}})
