from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.models import ExchangeCredential, TelegramUser
from accounts.preference_bounds import PREFERENCE_BOUNDS
from accounts.services import (
    exchange_credential_deactivate,
    preferences_update,
    telegram_user_ban_set,
    telegram_user_register,
)
from accounts.tests.factories import ExchangeCredentialFactory, SubscriptionFactory, TelegramUserFactory


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
    preferences_update(
        user=user, changes={"leverage": 10, "accepted_risk_levels": ["low"], "muted_symbols": ["DOGE/USDT:USDT"]}
    )
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


# ---- preferences_update: normalising and invariants (the one door of the bot, the web form and the API) ----------


@pytest.mark.django_db
def test_muted_symbols_are_stored_canonical_one_per_base():
    user = TelegramUserFactory()
    prefs = preferences_update(user=user, changes={"muted_symbols": ["doge", "DOGE/USDT", "pepe", "DOGEUSDT"]})
    assert prefs.muted_symbols == ["DOGE/USDT:USDT", "PEPE/USDT:USDT"]
    with pytest.raises(ValidationError) as refused:
        preferences_update(user=user, changes={"muted_symbols": ["DOGE", "<b>"]})
    assert refused.value.message_dict == {
        "muted_symbols": ["“<b>” is not a symbol. Write coin names such as DOGE or PEPE, separated by commas."]
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("leverage", 21, "Leverage must be a whole number from 1x to 20x."),
        ("leverage", Decimal("2.5"), "Leverage must be a whole number from 1x to 20x."),
        ("max_open_positions", 0, "Max open positions must be a whole number from 1 to 50."),
        ("position_size_pct", Decimal("0.01"), "Position size must be a number from 0.1% to 100%."),
        ("daily_loss_limit_pct", Decimal("101"), "Daily loss limit must be a number from 0.5% to 100%."),
    ],
)
def test_each_bound_has_one_message_with_units_and_no_field_name(settings, name, value, message):
    settings.MAX_LEVERAGE = 20
    user = TelegramUserFactory()
    with pytest.raises(ValidationError) as refused:
        preferences_update(user=user, changes={name: value})
    assert refused.value.message_dict == {name: [message]}
    assert PREFERENCE_BOUNDS[name].message() == message


@pytest.mark.django_db
def test_every_wrong_setting_is_reported_at_once():
    user = TelegramUserFactory()
    with pytest.raises(ValidationError) as refused:
        preferences_update(
            user=user, changes={"leverage": 999, "position_size_pct": Decimal("0"), "muted_symbols": ["?"]}
        )
    assert set(refused.value.message_dict) == {"leverage", "position_size_pct", "muted_symbols"}


@pytest.mark.django_db
def test_live_mode_needs_a_connected_verified_exchange_and_disconnecting_returns_to_paper():
    user = TelegramUserFactory()
    with pytest.raises(ValidationError) as refused:
        preferences_update(user=user, changes={"paper_mode": False})
    assert "/subscribe" in refused.value.message_dict["paper_mode"][0]  # live trading is a paid feature
    SubscriptionFactory(user=user, source="admin", external_id=None)
    with pytest.raises(ValidationError) as refused:
        preferences_update(user=user, changes={"paper_mode": False})
    assert "Live trading needs a connected exchange" in refused.value.message_dict["paper_mode"][0]
    ExchangeCredentialFactory(user=user)
    assert preferences_update(user=user, changes={"paper_mode": False}).paper_mode is False
    assert exchange_credential_deactivate(user=user) == 1
    user.preferences.refresh_from_db()
    assert user.preferences.paper_mode is True and not ExchangeCredential.objects.filter(is_active=True).exists()


@pytest.mark.django_db
def test_auto_trading_switch_checks_what_it_needs_and_clears_an_exchange_stop():
    user = TelegramUserFactory()
    preferences_update(user=user, changes={"auto_trading": True})  # paper mode: the paper account is opened
    user.refresh_from_db()
    assert user.auto_trading_enabled
    TelegramUser.objects.filter(pk=user.pk).update(auto_trading_enabled=False, auto_trading_paused_reason="refused")
    ExchangeCredentialFactory(user=user)
    SubscriptionFactory(user=user, source="admin", external_id=None)
    preferences_update(user=user, changes={"paper_mode": False})
    ExchangeCredential.objects.filter(user=user).update(validated_at=None)  # keys no longer verified
    with pytest.raises(ValidationError) as refused:
        preferences_update(user=user, changes={"auto_trading": True})
    assert (
        "Auto-trading cannot be switched on yet: live trading needs a connected exchange"
        in refused.value.message_dict["auto_trading"][0]
    )
    ExchangeCredential.objects.filter(user=user).update(validated_at=user.joined_at)
    preferences_update(user=user, changes={"auto_trading": True})
    user.refresh_from_db()
    assert user.auto_trading_enabled and user.auto_trading_paused_reason == ""
    preferences_update(user=user, changes={"auto_trading": False})
    user.refresh_from_db()
    assert not user.auto_trading_enabled


@pytest.mark.django_db
def test_ban_switches_auto_trading_off():
    user = TelegramUserFactory(auto_trading_enabled=True)
    assert telegram_user_ban_set(telegram_id=user.telegram_id, banned=True).is_banned
    user.refresh_from_db()
    assert user.is_banned and not user.auto_trading_enabled
    assert telegram_user_ban_set(telegram_id=1, banned=True) is None
