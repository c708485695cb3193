"""What a user's plan unlocks: the one entitlement rule.

Signals stay free for everyone. A current subscription (status active, ``valid_until`` in the future or open-ended)
unlocks the features of its plan (``Plan.features``, managed in the admin):

- ``live_trading``: auto-trading on the user's own exchange (paper trading stays free);
- ``news_trading``: positions opened automatically from news signals (the cards stay free);
- ``flow_trading``: positions opened automatically from order-flow signals, and flips;
- ``more_positions``: more than ``SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS`` open positions at once.

When a subscription ends, positions already open are kept and managed to their exits; only new ones are refused,
because the callers ask ``feature_unlocked`` before opening, never before managing.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.html import escape

from accounts.models import Feature, Subscription, TelegramUser


def subscriptions_current(now: datetime | None = None) -> QuerySet[Subscription]:
    """The subscriptions in force at ``now``: active, and open-ended or valid until later (the plan rule's one
    definition of "current")."""
    now = now or timezone.now()
    return Subscription.objects.filter(status=Subscription.Status.ACTIVE).filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=now)
    )


def user_features(user: TelegramUser, *, now: datetime | None = None) -> frozenset[str]:
    """Every feature the user's current subscriptions unlock."""
    features: set[str] = set()
    for plan_features in subscriptions_current(now).filter(user=user).values_list("plan__features", flat=True):
        features.update(plan_features or [])
    return frozenset(features)


def feature_unlocked(user: TelegramUser, feature: str, *, now: datetime | None = None) -> bool:
    """THE entitlement rule: may ``user`` use ``feature`` now? True when a current subscription's plan lists it."""
    if feature not in Feature.values:
        raise ValueError(f"unknown feature {feature!r}")
    return feature in user_features(user, now=now)


def open_positions_limit(
    user: TelegramUser | None = None,
    *,
    preferred: int,
    now: datetime | None = None,
    features: Collection[str] | None = None,
) -> int:
    """How many positions may be open at once: the user's own setting, capped on the free tier. ``features``: what
    the user's plan unlocks, when the caller has looked it up already."""
    unlocked = user_features(user, now=now) if features is None else features
    if Feature.MORE_POSITIONS in unlocked:
        return preferred
    return min(preferred, settings.SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS)


def locked_message(feature: str) -> str:
    """What to tell a user who asks for a locked feature (Telegram HTML; also fine as plain text on the web)."""
    label = Feature(feature).label
    extra = ""
    if feature == Feature.MORE_POSITIONS:
        extra = f" Free accounts keep up to {settings.SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS} positions open."
    return f"🔒 {escape(label)} is part of a paid plan; signals stay free.{extra} Send /subscribe to see the plans."
