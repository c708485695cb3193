"""Every write to Telegram users, their preferences and exchange credentials (HackSoft style:
keyword-only arguments, ``<entity>_<action>`` names; subscriptions and payments: ``accounts.subscriptions`` and
``accounts.payments``). The bot, the web dashboard, the API, the control panel, the admin and the trading app call
these; nothing else saves those models.

``preferences_update`` is the one door for a user's settings: it normalises (symbols through
``accounts.symbols.symbol_canonical``, risk levels in their fixed order), checks every bound
(``accounts.preference_bounds``) and the invariants (live mode needs a connected, verified exchange; switching
auto-trading on needs what ``accounts.policy.auto_trading_missing`` lists), and saves nothing when anything is
refused.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.crypto import SecretDecryptionError, rotate_secret
from accounts.entitlements import locked_message
from accounts.models import (
    RISK_LEVELS,
    ApiSecrets,
    ExchangeCredential,
    Feature,
    TelegramChat,
    TelegramUser,
    UserPreferences,
)
from accounts.policy import auto_trading_missing, live_mode_refusal
from accounts.preference_bounds import PREFERENCE_BOUNDS, bound_check
from accounts.symbols import symbol_base, symbol_canonical
from accounts.telegram_ids import telegram_id_valid
from config.events import publish

AUTO_TRADING = "auto_trading"  # the change key of the auto-trading switch (stored on the user)
LIVE_NEEDS_EXCHANGE = (
    "Live trading needs a connected exchange: connect one with /connect in the Telegram bot. You stay in paper mode."
)


@transaction.atomic
def telegram_user_register(
    *, telegram_id: int, username: str = "", first_name: str = "", language: str = "en"
) -> tuple[TelegramUser, bool]:
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


# ---- Telegram users --------------------------------------------------------------------------------------------


def telegram_users_mark_blocked(*, user_ids) -> int:
    """The user blocked the bot (403 or a "kicked" membership): stop sending to them until they talk to it again."""
    return TelegramUser.objects.filter(id__in=list(user_ids), is_active=True).update(is_active=False)


@transaction.atomic
def telegram_users_ban_set(*, users, banned: bool) -> list[TelegramUser]:
    """Ban (the bot stops serving them, broadcasts skip them, auto-trading is switched off) or unban ``users``.
    Returns the users whose state changed."""
    changed = [user for user in users if user.is_banned != banned]
    fields = {"is_banned": banned, **({"auto_trading_enabled": False} if banned else {})}
    TelegramUser.objects.filter(pk__in=[user.pk for user in changed]).update(**fields)
    for user in changed:
        for name, value in fields.items():
            setattr(user, name, value)
        if banned:
            publish("user.banned", user_id=user.pk)  # the web closes the user's open live-update sockets
    return changed


def telegram_user_ban_set(*, telegram_id: int, banned: bool) -> TelegramUser | None:
    """Ban or unban one user by Telegram id; None when nobody has that id."""
    user = TelegramUser.objects.filter(telegram_id=telegram_id).first()
    if user is not None:
        telegram_users_ban_set(users=[user], banned=banned)
    return user


def telegram_users_admin_set(*, users, admin: bool = True) -> list[TelegramUser]:
    changed = [user for user in users if user.is_admin != admin]
    TelegramUser.objects.filter(pk__in=[user.pk for user in changed]).update(is_admin=admin)
    for user in changed:
        user.is_admin = admin
    return changed


def telegram_user_web_user_set(*, user: TelegramUser, web_user) -> TelegramUser:
    """Link the Telegram user to their web login."""
    user.web_user = web_user
    user.save(update_fields=["web_user"])
    return user


def telegram_user_auto_trading_pause(*, user: TelegramUser, reason: str, only_if_running: bool = False) -> bool:
    """Hold new entries for ``user`` (auto-trading stays on; ``/resume`` lifts it). ``only_if_running``: only a user
    not paused yet is paused (a concurrent pass cannot pause twice). Returns whether this call paused them."""
    reason = reason[:200]
    rows = TelegramUser.objects.filter(pk=user.pk)
    if only_if_running:
        rows = rows.filter(auto_trading_paused_reason="")
    paused = bool(rows.update(auto_trading_paused_reason=reason))
    if paused:
        user.auto_trading_paused_reason = reason
    return paused


def telegram_user_auto_trading_resume(*, user: TelegramUser) -> None:
    """Lift the user's pause (the trading app resets its drawdown peaks around this: ``user_auto_trading_resume``)."""
    TelegramUser.objects.filter(pk=user.pk).update(auto_trading_paused_reason="")
    user.auto_trading_paused_reason = ""


def telegram_user_auto_trading_stop(*, user: TelegramUser, reason: str) -> None:
    """Switch auto-trading off and record why (a final exchange refusal); the user switches it on again once fixed."""
    reason = reason[:200]
    TelegramUser.objects.filter(pk=user.pk).update(auto_trading_enabled=False, auto_trading_paused_reason=reason)
    user.auto_trading_enabled, user.auto_trading_paused_reason = False, reason


# ---- preferences (and the auto-trading switch) ------------------------------------------------------------------


def _editable_preferences() -> set[str]:
    return {f.name for f in UserPreferences._meta.get_fields() if getattr(f, "editable", False)} - {"id", "user"}


def _muted_symbols_normalise(value: Any) -> Any:
    """Every spelling → 'DOGE/USDT:USDT', one entry per base, in the order given; anything else left for the
    validator to refuse with its message."""
    if not isinstance(value, list | tuple):
        return value
    symbols, bases = [], set()
    for entry in value:
        canonical = symbol_canonical(entry) if isinstance(entry, str) else None
        if canonical is None:
            raise ValidationError(
                {
                    "muted_symbols": f"“{str(entry)[:40]}” is not a symbol. Write coin names such as "
                    "DOGE or PEPE, separated by commas."
                }
            )
        if symbol_base(canonical) not in bases:
            bases.add(symbol_base(canonical))
            symbols.append(canonical)
    return symbols


def _risk_levels_normalise(value: Any) -> Any:
    if not isinstance(value, list | tuple) or any(not isinstance(level, str) for level in value):
        return value
    chosen = {level.strip().lower() for level in value}
    if chosen - set(RISK_LEVELS):
        return list(value)  # the validator names the allowed levels
    return [level for level in RISK_LEVELS if level in chosen]


def preferences_update(*, user: TelegramUser, changes: dict[str, Any]) -> UserPreferences:
    """Apply ``changes`` to the user's preferences (and, with the key ``"auto_trading"``, switch auto-trading on or
    off) after normalising and checking everything; raises ``ValidationError`` (keyed by setting, every problem at
    once, messages written for the trader) and saves nothing when anything is refused."""
    return _preferences_apply(user=user, changes=changes, commit=True)


def preferences_check(*, user: TelegramUser, changes: dict[str, Any]) -> None:
    """What ``preferences_update`` would refuse, without saving anything even when all is well (the web form asks
    it for the settings its own parsing accepted, so every wrong setting is shown at once)."""
    _preferences_apply(user=user, changes=changes, commit=False)


def _filters_normalise(changes: dict[str, Any]) -> dict[str, list[str]]:
    """Normalise the signal filters a user and a group share (muted symbols, risk levels) in place; the errors of
    what cannot be read, by setting."""
    errors: dict[str, list[str]] = {}
    if "muted_symbols" in changes:
        try:
            changes["muted_symbols"] = _muted_symbols_normalise(changes["muted_symbols"])
        except ValidationError as error:
            errors.update(error.message_dict)
    if "accepted_risk_levels" in changes:
        changes["accepted_risk_levels"] = _risk_levels_normalise(changes["accepted_risk_levels"])
    return errors


@transaction.atomic
def _preferences_apply(*, user: TelegramUser, changes: dict[str, Any], commit: bool) -> UserPreferences:
    preferences, _ = UserPreferences.objects.select_for_update().get_or_create(user=user)
    was_live = not preferences.paper_mode  # staying live is not going live
    locked = TelegramUser.objects.select_for_update(no_key=True).get(pk=user.pk)
    changes = dict(changes)
    auto_trading = changes.pop(AUTO_TRADING, None)
    editable = _editable_preferences()
    unknown = set(changes) - editable
    if unknown:
        raise ValidationError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    errors: dict[str, list[str]] = {}
    errors.update(_filters_normalise(changes))
    for name, value in changes.items():
        if name in PREFERENCE_BOUNDS and value is not None:
            try:
                bound_check(name, value)
            except ValidationError as error:
                errors.setdefault(name, []).extend(error.messages)
        setattr(preferences, name, value)
    try:  # only the changed settings: a value stored under an older cap does not block another change
        preferences.full_clean(exclude=["user", *(editable - set(changes)), *errors])
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if changes.get("paper_mode") is False and "paper_mode" not in errors and not was_live:
        live_refused = live_mode_refusal(user=locked)
        if live_refused is not None:
            errors.setdefault("paper_mode", []).append(
                locked_message(Feature.LIVE_TRADING) if live_refused.reason == "plan_required" else LIVE_NEEDS_EXCHANGE
            )
    if auto_trading is not None and not isinstance(auto_trading, bool):
        errors.setdefault(AUTO_TRADING, []).append("Auto-trading is switched on or off.")
    elif auto_trading is True and not locked.auto_trading_enabled and "paper_mode" not in errors:
        missing = auto_trading_missing(user=locked, preferences=preferences)
        if missing:
            errors.setdefault(AUTO_TRADING, []).append(
                "Auto-trading cannot be switched on yet: " + "; ".join(missing) + "."
            )
    if errors:
        raise ValidationError(errors)
    if not commit:
        return preferences
    preferences.save()
    if isinstance(auto_trading, bool) and (auto_trading != locked.auto_trading_enabled or not auto_trading):
        # On: the reason of an earlier stop is cleared (the user says it is fixed); the pause of a switch that is on
        # stays until /resume. Off: the user's own choice, no reason kept.
        reason = locked.auto_trading_paused_reason if auto_trading and locked.auto_trading_enabled else ""
        TelegramUser.objects.filter(pk=user.pk).update(
            auto_trading_enabled=auto_trading, auto_trading_paused_reason=reason
        )
        user.auto_trading_enabled, user.auto_trading_paused_reason = auto_trading, reason
    return preferences


# ---- groups and channels ----------------------------------------------------------------------------------------

CHAT_FILTERS = ("news_signals", "flow_signals", "accepted_risk_levels", "muted_symbols")


def telegram_chat_register(
    *, chat_id: int, kind: str, title: str = "", username: str = "", added_by: TelegramUser | None = None
) -> tuple[TelegramChat, bool]:
    """The bot was added to a group, supergroup or channel: register it (again) for signal cards. Returns the chat
    and whether it was new; a chat registered earlier keeps its filters."""
    if kind not in TelegramChat.Kind.values:
        raise ValueError(f"not a group or channel: {kind!r}")
    chat, created = TelegramChat.objects.get_or_create(
        chat_id=chat_id, defaults={"kind": kind, "title": title[:255], "username": username[:64], "added_by": added_by}
    )
    if not created:
        chat.kind, chat.title, chat.username = kind, title[:255] or chat.title, username[:64]
        chat.is_active, chat.unregistered_at, chat.unregistered_reason = True, None, ""
        if added_by is not None:
            chat.added_by = added_by
        chat.save()
    return chat, created


def telegram_chats_unregister(*, chat_ids, reason: str) -> int:
    """The bot was removed from these chats or Telegram refused a send (403): no more cards. Returns how many were
    registered."""
    return TelegramChat.objects.filter(chat_id__in=[int(c) for c in chat_ids], is_active=True).update(
        is_active=False, unregistered_at=timezone.now(), unregistered_reason=reason[:200]
    )


def telegram_chat_migrate(*, old_chat_id: int, new_chat_id: int) -> bool:
    """A group became a supergroup (Telegram gives it a new id): the registration and its filters follow."""
    if TelegramChat.objects.filter(chat_id=new_chat_id).exists():
        return False
    return bool(
        TelegramChat.objects.filter(chat_id=old_chat_id).update(chat_id=new_chat_id, kind=TelegramChat.Kind.SUPERGROUP)
    )


@transaction.atomic
def chat_filters_update(*, chat: TelegramChat, changes: dict[str, Any]) -> TelegramChat:
    """A group admin changes the group's signal filters (sources, risk levels, muted symbols): normalised and checked
    exactly as a user's own (``preferences_update``'s normalisers and the model's validators); every problem at once,
    nothing saved when anything is refused."""
    locked = TelegramChat.objects.select_for_update().get(pk=chat.pk)
    changes = dict(changes)
    unknown = set(changes) - set(CHAT_FILTERS)
    if unknown:
        raise ValidationError(f"Unknown group setting(s): {', '.join(sorted(unknown))}.")
    errors = _filters_normalise(changes)
    for name, value in changes.items():
        if name not in errors:
            setattr(locked, name, value)
    for name in ("news_signals", "flow_signals"):
        if name in changes and not isinstance(changes[name], bool):
            errors.setdefault(name, []).append("Switch it on or off.")
    try:
        locked.full_clean(
            exclude=[f.name for f in TelegramChat._meta.fields if f.name not in changes or f.name in errors]
        )
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)
    locked.save()
    for name in CHAT_FILTERS:
        setattr(chat, name, getattr(locked, name))
    return locked


# ---- exchange credentials ---------------------------------------------------------------------------------------


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


@transaction.atomic
def exchange_credential_deactivate(*, user: TelegramUser, reason: str = "disconnected by the user") -> int:
    """Deactivate the user's active credential (kept encrypted for the audit trail). Live mode needs an exchange,
    so a user trading live is put back in paper mode. Returns how many credentials were active."""
    count = ExchangeCredential.objects.filter(user=user, is_active=True).update(
        is_active=False, disabled_reason=reason[:200]
    )
    if count:
        UserPreferences.objects.filter(user=user, paper_mode=False).update(paper_mode=True, updated_at=timezone.now())
    return count


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
