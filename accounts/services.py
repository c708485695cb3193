"""Writes of the accounts app: registration, preferences, credentials."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.crypto import SecretDecryptionError, rotate_secret
from accounts.models import ApiSecrets, ExchangeCredential, TelegramUser, UserPreferences
from accounts.telegram_ids import telegram_id_valid
from config.events import publish


@transaction.atomic
def telegram_user_register(*, telegram_id: int, username: str = "", first_name: str = "", language: str = "en") -> tuple[TelegramUser, bool]:
    """Create the user (and default preferences) on first contact; refresh name and last_seen afterwards. An id no
    Telegram user can have (0, negative, beyond 52 bits) raises ValueError and creates nothing."""
    if not telegram_id_valid(telegram_id):
        raise ValueError("not a Telegram user id")
    user, created = TelegramUser.objects.get_or_create(
        telegram_id=telegram_id,
        defaults={"username": username[:64], "first_name": first_name[:128], "language": (language or "en")[:8]},
    )
    if not created:
        user.username, user.first_name = username[:64], first_name[:128]
    user.last_seen_at = timezone.now()
    user.is_active = True
    user.save()
    UserPreferences.objects.get_or_create(user=user)
    return user, created


def preferences_update(*, user: TelegramUser, changes: dict[str, Any]) -> UserPreferences:
    """Apply ``changes`` to the user's preferences after full validation; raises ValidationError, saving nothing."""
    preferences, _ = UserPreferences.objects.get_or_create(user=user)
    editable = {f.name for f in UserPreferences._meta.get_fields() if getattr(f, "editable", False)} - {"id", "user"}
    unknown = set(changes) - editable
    if unknown:
        raise ValidationError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    for name, value in changes.items():
        setattr(preferences, name, value)
    preferences.full_clean(exclude=["user"])
    preferences.save()
    return preferences


@transaction.atomic
def exchange_credential_create(*, user: TelegramUser, exchange: str, secrets: ApiSecrets) -> ExchangeCredential:
    """Store new keys encrypted; the user's previously active credential is deactivated (one exchange at a time)."""
    ExchangeCredential.objects.select_for_update().filter(user=user, is_active=True).update(
        is_active=False, disabled_reason="replaced by a new connection"
    )
    credential = ExchangeCredential(user=user, exchange=exchange, validated_at=timezone.now())
    credential.set_secrets(secrets)
    credential.full_clean(exclude=["api_key_encrypted", "api_secret_encrypted", "passphrase_encrypted", "last4"])
    credential.save()
    return credential


def exchange_credentials_rotate_keys() -> int:
    """Re-encrypt every stored secret with the newest Fernet key. Returns the number of credentials rewritten."""
    count = 0
    for credential in ExchangeCredential.objects.order_by("pk").iterator():
        with transaction.atomic():
            try:
                credential.api_key_encrypted = rotate_secret(credential.api_key_encrypted)
                credential.api_secret_encrypted = rotate_secret(credential.api_secret_encrypted)
                if credential.passphrase_encrypted:
                    credential.passphrase_encrypted = rotate_secret(credential.passphrase_encrypted)
            except SecretDecryptionError as exc:
                raise SecretDecryptionError(
                    f"credential {credential.pk} cannot be decrypted with any key in FERNET_KEYS"
                ) from exc
            credential.save(update_fields=["api_key_encrypted", "api_secret_encrypted", "passphrase_encrypted"])
        count += 1
    return count


def admins_notify(*, text: str, dedupe_key: str) -> int:
    """Send ``text`` (already-escaped HTML) to every active admin through the ``user.notify`` event. Returns the
    number of admins told; ``dedupe_key`` makes a repeat a no-op on the bridge side."""
    admins = TelegramUser.objects.filter(is_active=True, is_banned=False).filter(
        is_admin=True
    ) | TelegramUser.objects.filter(telegram_id__in=settings.ADMIN_TELEGRAM_IDS)
    told = 0
    for admin in admins.distinct():
        publish("user.notify", user_id=admin.pk, text=text, dedupe_key=dedupe_key)
        told += 1
    return told


def telegram_users_mark_blocked(*, user_ids) -> int:
    """The user blocked the bot (403): stop sending to them until they talk to the bot again (/start)."""
    return TelegramUser.objects.filter(id__in=list(user_ids), is_active=True).update(is_active=False)
