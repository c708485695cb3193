"""What a plan unlocks and for how long: the entitlement rule, reminders before the end, downgrade at the end,
operators' grant / extend / refund, and revenue per plan and gateway on the control panel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from accounts import entitlements
from accounts.models import Feature, Payment, Subscription
from accounts.subscriptions import payment_refund, subscription_grant, subscriptions_lifecycle
from accounts.tests.factories import PaymentFactory, PlanFactory, SubscriptionFactory, TelegramUserFactory

pytestmark = pytest.mark.django_db


class TestEntitlements:
    def test_free_users_have_signals_only(self, settings):
        settings.SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS = 3
        user = TelegramUserFactory()
        assert entitlements.user_features(user) == frozenset()
        assert not any(entitlements.feature_unlocked(user, feature) for feature in Feature.values)
        assert entitlements.open_positions_limit(user, preferred=10) == 3
        message = entitlements.locked_message(Feature.LIVE_TRADING)
        assert "Live auto-trading" in message and "/subscribe" in message and "signals stay free" in message

    def test_a_current_plan_unlocks_its_features_only_until_it_ends(self):
        now = timezone.now()
        news_only = PlanFactory(code="news", whop_plan_id=None, features=[Feature.NEWS_TRADING])
        user = TelegramUserFactory()
        subscription = SubscriptionFactory(user=user, plan=news_only, valid_until=now + timedelta(days=1))
        assert entitlements.feature_unlocked(user, Feature.NEWS_TRADING)
        assert not entitlements.feature_unlocked(user, Feature.LIVE_TRADING)
        assert not entitlements.feature_unlocked(user, Feature.NEWS_TRADING, now=now + timedelta(days=2))
        assert entitlements.open_positions_limit(user, preferred=10) <= 3
        subscription.status = Subscription.Status.CANCELLED
        subscription.save()
        assert not entitlements.feature_unlocked(user, Feature.NEWS_TRADING)

    def test_the_rule_holds_for_a_current_plan_only(self):
        pro_user, free_user, lapsed = TelegramUserFactory.create_batch(3)
        SubscriptionFactory(user=pro_user, valid_until=None, source="admin", external_id=None)
        SubscriptionFactory(user=lapsed, valid_until=timezone.now() - timedelta(seconds=1))
        assert {
            u.pk for u in (pro_user, free_user, lapsed) if entitlements.feature_unlocked(u, Feature.FLOW_TRADING)
        } == {pro_user.pk}
        with pytest.raises(ValueError):
            entitlements.feature_unlocked(pro_user, "teleportation")


class TestLifecycle:
    def test_reminder_once_then_downgrade_at_the_end(self, published, django_capture_on_commit_callbacks, settings):
        settings.SUBSCRIPTION_REMINDER_DAYS = 3
        now = timezone.now()
        user = TelegramUserFactory()
        ending = SubscriptionFactory(user=user, source="solana", external_id=None, valid_until=now + timedelta(days=2))
        SubscriptionFactory(valid_until=now + timedelta(days=2))  # Whop renews and reminds by itself
        SubscriptionFactory(source="admin", external_id=None, valid_until=now + timedelta(days=20))  # not yet
        with django_capture_on_commit_callbacks(execute=True):
            assert subscriptions_lifecycle(now=now) == {"reminded": 1, "expired": 0, "requests_expired": 0}
            assert subscriptions_lifecycle(now=now + timedelta(hours=1))["reminded"] == 0  # once per end date
        assert [(e, p["user_id"]) for e, p in published] == [("user.notify", user.pk)]
        assert "ends in about 2 day(s)" in published[0][1]["text"]

        later = now + timedelta(days=2, seconds=1)
        with django_capture_on_commit_callbacks(execute=True):
            result = subscriptions_lifecycle(now=later)
            assert subscriptions_lifecycle(now=later)["expired"] == 0
        assert result["expired"] == 2  # the Solana time and the lapsed Whop row
        ending.refresh_from_db()
        assert ending.status == Subscription.Status.EXPIRED
        ended = [p for e, p in published if "has ended" in p["text"]]
        assert len(ended) == 2 and "Positions already open are kept and managed" in ended[0]["text"]
        assert not entitlements.feature_unlocked(user, Feature.LIVE_TRADING)

    def test_grant_extends_and_refund_takes_the_period_back(self, published):
        user, plan = TelegramUserFactory(), PlanFactory()
        first = subscription_grant(user=user, days=30)
        again = subscription_grant(user=user, days=10, plan=plan)
        assert first.pk == again.pk and first.plan == plan and first.source == Subscription.Source.ADMIN
        payment = PaymentFactory(user=user, plan=plan, subscription=first)
        before = Subscription.objects.get().valid_until
        payment_refund(payment=payment)
        payment_refund(payment=payment)  # twice: no-op
        payment.refresh_from_db()
        subscription = Subscription.objects.get()
        assert payment.status == Payment.Status.REFUNDED and subscription.valid_until == before - timedelta(days=30)
        assert subscription.status == Subscription.Status.ACTIVE  # the other 10 days remain
        payment2 = PaymentFactory(user=user, plan=plan, subscription=subscription)
        payment_refund(payment=payment2)
        subscription.refresh_from_db()
        assert subscription.status == Subscription.Status.REFUNDED and not entitlements.user_features(user)


class TestOperators:
    def post_action(self, client, changelist, action, objects, **extra):
        return client.post(
            reverse(changelist), {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objects], **extra}
        )

    def test_admin_refund_asks_first_then_records(self, staff_client, published):
        payment = PaymentFactory(subscription=SubscriptionFactory(valid_until=timezone.now() + timedelta(days=3)))
        preview = self.post_action(staff_client, "admin:accounts_payment_changelist", "refund", [payment])
        assert preview.status_code == 200 and b"Record 1 refund(s)?" in preview.content
        assert Payment.objects.get().status == Payment.Status.PAID
        self.post_action(staff_client, "admin:accounts_payment_changelist", "refund", [payment], confirm="yes")
        assert Payment.objects.get().status == Payment.Status.REFUNDED
        assert Subscription.objects.get().status == Subscription.Status.REFUNDED

    def test_admin_extend_leaves_whop_memberships_to_whop(self, staff_client):
        until = timezone.now() + timedelta(days=1)
        whop = SubscriptionFactory(valid_until=until)
        admin_time = SubscriptionFactory(source="admin", external_id=None, valid_until=until)
        self.post_action(staff_client, "admin:accounts_subscription_changelist", "extend_30_days", [whop, admin_time])
        whop.refresh_from_db()
        admin_time.refresh_from_db()
        assert whop.valid_until == until and admin_time.valid_until == until + timedelta(days=30)

    def test_plan_admin_pages_and_features_form(self, staff_client):
        response = staff_client.post(
            reverse("admin:accounts_plan_add"),
            {
                "code": "news",
                "name": "News",
                "period_days": 30,
                "features": ["news_trading", "flow_trading"],
                "price_usd": "9",
                "solana_amount": "9000000",
                "solana_mint": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
                "solana_decimals": 6,
                "is_active": "on",
                "sort_order": 1,
            },
        )
        assert response.status_code == 302
        plan = PlanFactory._meta.model.objects.get(code="news")
        assert plan.features == ["news_trading", "flow_trading"] and plan.solana_amount == 9_000_000
        bad = staff_client.post(
            reverse("admin:accounts_plan_add"),
            {
                "code": "bad",
                "name": "Bad",
                "period_days": 30,
                "price_usd": "1",
                "solana_mint": "not-a-mint",
                "solana_decimals": 9,
                "sort_order": 0,
            },
        )
        assert bad.status_code == 200 and b"Not a Solana address" in bad.content
        for name in ("plan", "payment", "subscription"):
            assert staff_client.get(reverse(f"admin:accounts_{name}_changelist")).status_code == 200

    def test_control_panel_shows_revenue_per_plan_and_gateway(self, staff_client):
        PaymentFactory(amount_base_units=2900, paid_at=timezone.now())
        PaymentFactory(
            gateway=Payment.Gateway.SOLANA,
            amount_base_units=150_000_000,
            decimals=9,
            currency="SOL",
            paid_at=timezone.now(),
        )
        page = staff_client.get(reverse("control:dashboard")).content.decode()
        assert "Revenue by plan and gateway" in page
        assert "<td>Pro</td><td>whop</td><td>1</td><td>29 USD</td>" in page
        assert "<td>Pro</td><td>solana</td><td>1</td><td>0.15 SOL</td>" in page
