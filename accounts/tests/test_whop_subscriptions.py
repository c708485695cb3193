"""Whop: a checkout created through Whop's API (the real httpx client against the local stand-in) carrying the
buyer's Telegram id; deliveries signed by the ``standardwebhooks`` reference library (an independent client) in the
shapes of Whop's documentation; one purchase is one period whatever the overlap and replays; cancel, expiry and
refund downgrade."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from accounts import entitlements
from accounts.models import Feature, Payment, Subscription, TelegramUser, WebhookEvent
from accounts.subscriptions import CheckoutError, whop_checkout_create
from accounts.tests.factories import PlanFactory, TelegramUserFactory
from testsupport.whop_api import (
    WhopFakeServer,
    delivery,
    membership_payload,
    payment_payload,
    refund_payload,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def reference_signer(msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' own Python library signs the delivery (not our code)."""
    return Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())


@pytest.fixture(scope="module")
def whop_server():
    with WhopFakeServer(api_key="whop-test-key", plans={"plan_pro": 30}) as server:
        yield server


@pytest.fixture
def whop_api(whop_server, settings):
    settings.WHOP_API_BASE, settings.WHOP_API_KEY = whop_server.api_base, "whop-test-key"
    whop_server.checkouts.clear()
    return whop_server


@pytest.fixture
def whop(client, settings, django_capture_on_commit_callbacks):
    settings.WHOP_WEBHOOK_SECRET = SECRET

    def post(payload, *, msg_id=None):
        body, headers = delivery(payload, secret=SECRET, msg_id=msg_id, sign=reference_signer)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(reverse("api:webhook-whop"), data=body, content_type="application/json", headers=headers)

    return post


@pytest.mark.django_db
class TestCheckout:
    def test_checkout_through_the_api_carries_the_telegram_id(self, whop_api):
        user, plan = TelegramUserFactory(telegram_id=4242), PlanFactory()
        url = whop_checkout_create(user=user, plan=plan)
        checkout = whop_api.checkouts[whop_api.checkout_id_of(url)]
        assert url.startswith(whop_api.url + "/checkout/plan_pro?session=ch_")
        assert checkout["metadata"] == {"telegram_id": "4242", "plan": "pro"} and checkout["plan"]["id"] == "plan_pro"
        assert whop_api.requests[-1]["headers"]["Authorization"] == "Bearer whop-test-key"

    def test_refused_or_unreachable_whop_is_a_polite_error(self, whop_api, settings):
        user = TelegramUserFactory()
        settings.WHOP_API_KEY = "wrong"
        with pytest.raises(CheckoutError, match="unavailable right now"):
            whop_checkout_create(user=user, plan=PlanFactory())
        settings.WHOP_API_KEY, settings.WHOP_API_BASE = "whop-test-key", "http://127.0.0.1:9/api/v1"
        with pytest.raises(CheckoutError, match="unavailable right now"):
            whop_checkout_create(user=user, plan=PlanFactory())
        with pytest.raises(CheckoutError, match="not sold by card"):
            whop_checkout_create(user=user, plan=PlanFactory(code="sol-only", whop_plan_id=None))


@pytest.mark.django_db
class TestOnePurchaseIsOnePeriod:
    def test_went_valid_and_payment_succeeded_and_replays_give_one_period(self, whop_api, whop, published):
        user, plan = TelegramUserFactory(telegram_id=4242), PlanFactory()
        checkout_id = whop_api.checkout_id_of(whop_checkout_create(user=user, plan=plan))
        went_valid, paid = whop_api.checkout_complete(checkout_id)
        period_end = datetime.fromisoformat(went_valid["data"]["renewal_period_end"].replace("Z", "+00:00"))

        assert whop(went_valid).json() == {"status": "accepted"}
        assert whop(paid).json() == {"status": "accepted"}
        assert whop(went_valid).json() == {"status": "duplicate"}  # Whop's retry: the same webhook-id
        whop(paid, msg_id="msg_resent_with_a_new_id")  # the same payment announced again
        whop(went_valid, msg_id="msg_another_copy")

        subscription = Subscription.objects.get()
        assert subscription.user == user and subscription.plan == plan and subscription.external_id.startswith("mem_")
        assert subscription.valid_until == period_end  # one period, from the membership's period end
        assert period_end - timezone.now() <= timedelta(days=30)
        payment = Payment.objects.get()
        assert (payment.amount_base_units, payment.decimals, payment.currency) == (2900, 2, "USD")
        assert payment.subscription == subscription and payment.gateway == Payment.Gateway.WHOP
        assert entitlements.feature_unlocked(user, Feature.NEWS_TRADING)
        assert [e for e, _ in published] == ["user.notify"]  # one confirmation
        assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}

    def test_payment_before_membership_event_still_one_period(self, whop, published):
        user, plan = TelegramUserFactory(telegram_id=555), PlanFactory()
        now = datetime.now(UTC).replace(microsecond=0)
        end = now + timedelta(days=30)
        metadata = {"telegram_id": "555"}
        whop(
            payment_payload(
                payment_id="pay_1", membership_id="mem_1", plan_id="plan_pro", total=29, paid_at=now, metadata=metadata
            )
        )
        whop(
            membership_payload(
                membership_id="mem_1", plan_id="plan_pro", metadata=metadata, period_start=now, period_end=end
            )
        )
        assert Subscription.objects.get().valid_until == end
        assert Subscription.objects.get().user == user and plan.subscriptions.count() == 1

    def test_the_renewal_payment_a_period_later_extends_to_the_next_period(self, whop, published):
        TelegramUserFactory(telegram_id=556)
        PlanFactory()
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=29)
        whop(
            membership_payload(
                membership_id="mem_2",
                plan_id="plan_pro",
                metadata={"telegram_id": 556},
                period_start=start,
                period_end=start + timedelta(days=30),
            )
        )
        whop(
            payment_payload(
                payment_id="pay_2a", membership_id="mem_2", plan_id="plan_pro", total="29.00", paid_at=start
            )
        )
        renewal = start + timedelta(days=30)
        whop(
            payment_payload(
                payment_id="pay_2b", membership_id="mem_2", plan_id="plan_pro", total="29.00", paid_at=renewal
            )
        )
        assert Subscription.objects.get().valid_until == renewal + timedelta(days=30)
        assert Payment.objects.count() == 2

    def test_unknown_plan_or_buyer_is_rejected_and_reported(self, whop, published):
        TelegramUserFactory(telegram_id=557)
        PlanFactory()
        whop(
            membership_payload(
                membership_id="mem_3",
                plan_id="plan_unknown",
                metadata={"telegram_id": "557"},
                period_end=datetime.now(UTC) + timedelta(days=30),
            )
        )
        whop(
            membership_payload(
                membership_id="mem_4",
                plan_id="plan_pro",
                metadata={"telegram_id": "999999"},
                period_end=datetime.now(UTC) + timedelta(days=30),
            )
        )
        errors = dict(WebhookEvent.objects.values_list("status", "error").order_by("pk")[:1])
        assert "unknown Whop plan plan_unknown" in errors[WebhookEvent.Status.REJECTED]
        assert list(WebhookEvent.objects.values_list("status", flat=True)) == [WebhookEvent.Status.REJECTED] * 2
        assert "not a user of the bot" in WebhookEvent.objects.last().error
        assert not Subscription.objects.exists() and not TelegramUser.objects.filter(telegram_id=999999).exists()
        assert [e for e, _ in published] == ["admins.notify", "admins.notify"]


@pytest.mark.django_db
class TestDowngrade:
    @pytest.fixture
    def member(self, whop, published):
        user = TelegramUserFactory(telegram_id=600)
        PlanFactory()
        now = datetime.now(UTC)
        whop(
            membership_payload(
                membership_id="mem_6",
                plan_id="plan_pro",
                metadata={"telegram_id": "600"},
                period_start=now,
                period_end=now + timedelta(days=30),
            )
        )
        whop(payment_payload(payment_id="pay_6", membership_id="mem_6", plan_id="plan_pro", total=29, paid_at=now))
        assert entitlements.feature_unlocked(user, Feature.LIVE_TRADING)
        published.clear()
        return user

    @pytest.mark.parametrize(
        ("event_type", "status"),
        [
            ("membership.cancelled", Subscription.Status.CANCELLED),
            ("membership.went_invalid", Subscription.Status.EXPIRED),
            ("membership.deactivated", Subscription.Status.EXPIRED),
            ("membership.expired", Subscription.Status.EXPIRED),
        ],
    )
    def test_cancel_and_expire_downgrade(self, whop, member, published, event_type, status):
        ended = membership_payload(event_type=event_type, membership_id="mem_6", plan_id="plan_pro", status="canceled")
        whop(ended)
        subscription = Subscription.objects.get()
        assert subscription.status == status and subscription.valid_until <= timezone.now()
        assert not entitlements.feature_unlocked(member, Feature.LIVE_TRADING)
        assert [e for e, _ in published] == ["user.notify"] and "has ended" in published[0][1]["text"]
        # a stale copy of the activation does not bring it back
        whop(
            membership_payload(
                membership_id="mem_6",
                plan_id="plan_pro",
                metadata={"telegram_id": "600"},
                period_end=datetime.now(UTC) + timedelta(days=30),
            ),
            msg_id="msg_stale",
        )
        assert not entitlements.feature_unlocked(member, Feature.LIVE_TRADING)

    def test_refund_downgrades_and_is_not_revenue(self, whop, member, published):
        whop(refund_payload(payment_id="pay_6", membership_id="mem_6", amount=29))
        assert Subscription.objects.get().status == Subscription.Status.REFUNDED
        assert Payment.objects.get().status == Payment.Status.REFUNDED
        assert not entitlements.feature_unlocked(member, Feature.LIVE_TRADING)
        whop(
            payment_payload(payment_id="pay_6", membership_id="mem_6", plan_id="plan_pro", total=29),
            msg_id="msg_late_copy",
        )  # a late copy of the refunded payment changes nothing
        assert not entitlements.feature_unlocked(member, Feature.LIVE_TRADING)
