from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.models import TelegramUser
from accounts.services import preferences_update, telegram_user_register


@pytest.mark.django_db
def test_register_creates_user_with_default_preferences_once():
    user, created = telegram_user_register(telegram_id=42, username="alice")
    again, created_again = telegram_user_register(telegram_id=42, username="alice2")
    assert created and not created_again and user.pk == again.pk
    assert again.username == "alice2"
    assert again.preferences.accepted_risk_levels == ["low", "medium"]
    assert again.preferences.paper_mode is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [
        {"leverage": 500},
        {"position_size_pct": Decimal("0")},
        {"accepted_risk_levels": ["extreme"]},
        {"default_pnl_period": "decade"},
        {"max_open_positions": 0},
        {"not_a_setting": 1},
    ],
)
def test_invalid_preferences_are_refused_and_nothing_is_saved(changes):
    user, _ = telegram_user_register(telegram_id=7)
    with pytest.raises(ValidationError):
        preferences_update(user=user, changes=changes)
    user.preferences.refresh_from_db()
    assert user.preferences.leverage == 5
    assert user.preferences.position_size_pct == Decimal("5")


@pytest.mark.django_db
def test_valid_preferences_are_saved():
    user, _ = telegram_user_register(telegram_id=8)
    preferences_update(user=user, changes={"leverage": 10, "accepted_risk_levels": ["low"], "muted_symbols": ["DOGE/USDT:USDT"]})
    user.preferences.refresh_from_db()
    assert user.preferences.leverage == 10
    assert user.preferences.accepted_risk_levels == ["low"]
    assert user.preferences.muted_symbols == ["DOGE/USDT:USDT"]


@pytest.mark.django_db
@pytest.mark.parametrize("telegram_id", [0, -1, 2**53, True, "42"])
def test_impossible_telegram_ids_create_no_user(telegram_id):
    with pytest.raises(ValueError):
        telegram_user_register(telegram_id=telegram_id)
    assert not TelegramUser.objects.exists()
