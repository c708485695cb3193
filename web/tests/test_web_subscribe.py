"""/dashboard/subscribe/: the plans, a Whop checkout (redirect to Whop's purchase URL, the stand-in answering as
Whop does) and a Solana Pay request page with the transfer link and its QR code; another user's request is 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.login_links import login_link_create, web_user_for
from accounts.models import Payment
from accounts.tests.factories import PlanFactory, SubscriptionFactory, TelegramUserFactory
from testsupport.helius_recorded import address_for
from testsupport.whop_api import WhopFakeServer

pytestmark = pytest.mark.django_db
MERCHANT = address_for("merchant-wallet")


@pytest.fixture
def logged_in(client, settings):
    settings.SOLANA_MERCHANT_WALLET = MERCHANT
    user = TelegramUserFactory()
    token = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
    client.post(reverse("dashboard:login-link", args=[token]))
    return client, user


def test_plans_page_lists_prices_features_and_the_current_plan(logged_in):
    client, user = logged_in
    PlanFactory()
    page = client.get(reverse("dashboard:subscribe")).content.decode()
    assert "Pro" in page and "$29.00 by card (Whop) or 29 USDC (Solana Pay)" in page
    assert "live auto-trading on your exchange" in page and "free tier" in page
    SubscriptionFactory(user=user, source="admin", external_id=None)
    assert "Your plan: <strong>Pro</strong>" in client.get(reverse("dashboard:subscribe")).content.decode()


def test_solana_pay_request_page(logged_in):
    client, user = logged_in
    PlanFactory()
    response = client.post(reverse("dashboard:subscribe"), {"plan": "pro", "gateway": "solana"})
    payment = Payment.objects.get(user=user)
    assert response.status_code == 302 and response["Location"] == reverse(
        "dashboard:subscribe-solana", args=[payment.reference]
    )
    page = client.get(response["Location"]).content.decode()
    assert f'href="solana:{MERCHANT}?amount=29&amp;spl-token=' in page and payment.reference in page
    assert 'src="data:image/svg+xml' in page and "29 USDC" in page

    client.force_login(web_user_for(telegram_user=TelegramUserFactory()))  # someone else
    assert client.get(reverse("dashboard:subscribe-solana", args=[payment.reference])).status_code == 404


def test_whop_checkout_redirects_to_the_purchase_url(logged_in, settings):
    client, user = logged_in
    PlanFactory()
    with WhopFakeServer(api_key="k", plans={"plan_pro": 30}) as whop:
        settings.WHOP_API_BASE, settings.WHOP_API_KEY = whop.api_base, "k"
        response = client.post(reverse("dashboard:subscribe"), {"plan": "pro", "gateway": "whop"})
        assert response.status_code == 302 and response["Location"].startswith(whop.url + "/checkout/plan_pro")
        assert whop.checkouts[whop.checkout_id_of(response["Location"])]["metadata"]["telegram_id"] == str(
            user.telegram_id
        )
    settings.WHOP_API_KEY = ""
    failed = client.post(reverse("dashboard:subscribe"), {"plan": "pro", "gateway": "whop"}, follow=True)
    assert "Card checkout is unavailable right now" in failed.content.decode()


@pytest.mark.parametrize("form", [{"plan": "nope", "gateway": "solana"}, {"plan": "pro", "gateway": "paypal"}, {}])
def test_bad_choices_are_refused_politely(logged_in, form):
    client, _ = logged_in
    PlanFactory()
    page = client.post(reverse("dashboard:subscribe"), form, follow=True).content.decode()
    assert "Choose a plan and a way to pay." in page and not Payment.objects.exists()
