"""Every model registered in the admin: changelist and add/change pages load for staff, anonymous is redirected."""

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts.tests.factories import ExchangeCredentialFactory, SubscriptionFactory
from analytics.tests.factories import BacktestRunFactory, UserActivityFactory
from signals.tests.factories import FundingSnapshotFactory
from trading.tests.factories import OrderFactory, PaperAccountFactory

MODELS = [(model._meta.app_label, model._meta.model_name) for model in admin.site._registry]


@pytest.fixture
def some_rows(db):
    ExchangeCredentialFactory()
    SubscriptionFactory()
    UserActivityFactory()
    BacktestRunFactory()
    FundingSnapshotFactory()
    PaperAccountFactory()
    OrderFactory()


@pytest.mark.django_db
@pytest.mark.parametrize(("app_label", "model_name"), MODELS)
def test_changelist_and_change_page_load_for_staff(staff_client, some_rows, app_label, model_name):
    response = staff_client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    assert response.status_code == 200
    model = admin.site._registry and next(
        m for m in admin.site._registry if m._meta.model_name == model_name and m._meta.app_label == app_label
    )
    obj = model._default_manager.first()
    if obj is not None:
        response = staff_client.get(reverse(f"admin:{app_label}_{model_name}_change", args=[obj.pk]))
        assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(("app_label", "model_name"), MODELS)
def test_anonymous_is_redirected_to_login(client, app_label, model_name):
    response = client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_credential_admin_shows_no_secret(staff_client):
    credential = ExchangeCredentialFactory()
    page = staff_client.get(reverse("admin:accounts_exchangecredential_change", args=[credential.pk])).content.decode()
    assert credential.api_key_encrypted not in page and credential.api_secret_encrypted not in page
    assert "key-abcdef-1234" not in page and "secret-xyz" not in page
    assert credential.last4 in page


@pytest.mark.django_db
def test_ban_action_bans_and_stops_auto_trading(staff_client):
    from accounts.tests.factories import TelegramUserFactory

    user = TelegramUserFactory(auto_trading_enabled=True)
    response = staff_client.post(
        reverse("admin:accounts_telegramuser_changelist"),
        {"action": "ban_users", "_selected_action": [user.pk], "confirm": "yes"},  # ban asks for confirmation first
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_banned and not user.auto_trading_enabled
