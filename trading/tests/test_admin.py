"""The admin resumes a user whose auto-trading the drawdown rule paused."""

from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.tests.factories import TelegramUserFactory
from trading.models import PaperAccount, TradeRefusal, TradingSwitch

pytestmark = pytest.mark.django_db


def test_admin_resume_action_unpauses_and_restarts_the_peak(client):
    admin_user = get_user_model().objects.create_superuser("root", password="pw-for-tests-only")
    client.force_login(admin_user)
    user = TelegramUserFactory(auto_trading_enabled=True, auto_trading_paused_reason="max drawdown reached")
    account = PaperAccount.objects.create(
        user=user, starting_balance=Decimal("10000"), balance=Decimal("8500"), peak_equity=Decimal("10000")
    )
    url = reverse("admin:trading_paperaccount_changelist")
    assert "max drawdown reached" in client.get(url).content.decode()
    response = client.post(url, {"action": "resume_auto_trading", "_selected_action": [account.pk]})
    assert response.status_code == 302
    user.refresh_from_db()
    account.refresh_from_db()
    assert user.auto_trading_paused_reason == "" and account.peak_equity == Decimal("8500")


def test_refusals_switch_and_funding_are_in_the_admin():
    for model in (TradeRefusal, TradingSwitch, PaperAccount):
        assert model in site._registry
