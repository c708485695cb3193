"""Payments: store each provider delivery once, then apply it to the user's subscription exactly once."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Subscription, TelegramUser, WebhookEvent
from accounts.payment_webhooks import helius_accounts, helius_amount, whop_membership_change

logger = logging.getLogger(__name__)

SUBSCRIPTION_PERIOD = timedelta(days=30)

def webhook_event_receive(*, provider: str, event_id: str, payload: Any, event_type: str = "") -> tuple[WebhookEvent, bool]:
    """Store a delivery once (unique provider + event id) and queue its processing. Returns (event, created)."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider, event_id=event_id[:200], event_type=event_type[:64], payload=payload
            )
    except IntegrityError:
        return WebhookEvent.objects.get(provider=provider, event_id=event_id[:200]), False
    transaction.on_commit(lambda: _webhook_event_process_enqueue(event.pk))
    return event, True


def _webhook_event_process_enqueue(event_id: int) -> None:
    from accounts.tasks import webhook_event_process

    try:
        webhook_event_process.delay(event_id=event_id)
    except Exception:  # broker down: the event is stored (status received), webhook_events_process_stale applies it
        logger.warning("webhook event %s stored but not queued; the sweeper will process it", event_id, exc_info=True)


WEBHOOK_SWEEP_GRACE = timedelta(seconds=60)


def webhook_events_process_stale(*, limit: int = 200) -> int:
    """Sweeper (beat): stored deliveries still ``received`` a minute later (the enqueue failed or the worker died
    before committing). ``webhook_event_process`` locks the row and checks the status, so each applies once."""
    stale = (WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED,
                                         received_at__lt=timezone.now() - WEBHOOK_SWEEP_GRACE)
             .order_by("received_at").values_list("pk", flat=True)[:limit])
    ids = list(stale)
    for event_id in ids:
        webhook_event_process(event_id=event_id)
    return len(ids)


def webhook_event_process(*, event_id: int) -> WebhookEvent:
    """Apply a stored delivery to the subscriptions, once. Failures are recorded on the event, never raised."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_id)
        if event.status != WebhookEvent.Status.RECEIVED:
            return event
        try:
            with transaction.atomic():
                if event.provider == WebhookEvent.Provider.WHOP:
                    outcome = _whop_event_apply(event)
                else:
                    outcome = _helius_event_apply(event)
            event.status, event.error = outcome
        except Exception as exc:
            logger.exception("webhook event %s failed", event_id)
            event.status, event.error = WebhookEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "processed_at"])
    return event


def _whop_event_apply(event: WebhookEvent) -> tuple[str, str]:

    change = whop_membership_change(event.payload)
    if change.active is None:
        return WebhookEvent.Status.IGNORED, f"event type {change.event_type} needs no action"
    if change.active is False:
        status = Subscription.Status.EXPIRED if change.event_type.endswith("expired") else Subscription.Status.CANCELLED
        updated = Subscription.objects.filter(external_id=change.membership_id).update(status=status, updated_at=timezone.now())
        return (WebhookEvent.Status.PROCESSED, "") if updated else (WebhookEvent.Status.IGNORED, "unknown membership")
    user = TelegramUser.objects.filter(telegram_id=change.telegram_id).first() if change.telegram_id else None
    existing = Subscription.objects.select_for_update().filter(external_id=change.membership_id).first()
    if user is None and existing is None:
        return WebhookEvent.Status.IGNORED, "no Telegram user for this membership (metadata.telegram_id missing or unknown)"
    now = timezone.now()
    valid_until = change.valid_until or (max(existing.valid_until or now, now) if existing else now) + SUBSCRIPTION_PERIOD
    Subscription.objects.update_or_create(
        external_id=change.membership_id,
        defaults={
            "user": user or existing.user, "plan": change.plan, "status": Subscription.Status.ACTIVE,
            "source": Subscription.Source.WHOP, "amount": change.amount or (existing.amount if existing else 0),
            "currency": change.currency, "valid_until": valid_until,
        },
    )
    return WebhookEvent.Status.PROCESSED, ""


def _helius_event_apply(event: WebhookEvent) -> tuple[str, str]:
    """A Solana Pay payment: the bot created a pending Subscription whose external_id is the payment's reference key;
    the transaction that touches that key activates it for one period."""

    accounts = helius_accounts(event.payload)
    subscription = (
        Subscription.objects.select_for_update()
        .filter(source=Subscription.Source.SOLANA, status=Subscription.Status.PENDING, external_id__in=accounts)
        .first()
    ) if accounts else None
    if subscription is None:
        return WebhookEvent.Status.IGNORED, "no pending Solana subscription references this transaction"
    amount, currency = helius_amount(event.payload)
    now = timezone.now()
    subscription.status = Subscription.Status.ACTIVE
    subscription.valid_until = max(subscription.valid_until or now, now) + SUBSCRIPTION_PERIOD
    if amount > 0:
        subscription.amount, subscription.currency = amount, currency
    subscription.save(update_fields=["status", "valid_until", "amount", "currency", "updated_at"])
    return WebhookEvent.Status.PROCESSED, ""
