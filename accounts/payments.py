"""Payments: store each provider delivery once, then apply it to the user's subscription exactly once.

A delivery that cannot be applied because the payment does not hold (failed transaction, dust, wrong recipient,
wrong token, unknown reference, a second payment of a paid request, a payment after its request expired, an unknown
Whop plan or buyer) is kept with status ``rejected`` and the reason, and reported to the operators
(``admins.notify``). Nothing here trusts a float: Solana amounts are integer base units, Whop amounts cents.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Payment, Plan, Subscription, TelegramUser, WebhookEvent
from accounts.payment_webhooks import (
    WhopEvent,
    helius_accounts,
    helius_payment_check,
    helius_timestamp,
    helius_transaction_validate,
    whop_event,
)
from accounts.subscriptions import (
    admins_notify_payment_problem,
    subscription_extend,
    user_notify_subscription_active,
    user_notify_subscription_ended,
)
from config import events

logger = logging.getLogger(__name__)


def webhook_event_receive(
    *, provider: str, event_id: str, payload: Any, event_type: str = ""
) -> tuple[WebhookEvent, bool]:
    """Store a delivery once (unique provider + event id) and queue its processing. Returns (event, created)."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider, event_id=event_id[:200], event_type=event_type[:64], payload=payload
            )
    except IntegrityError:
        return WebhookEvent.objects.get(provider=provider, event_id=event_id[:200]), False
    # broker down: the event stays ``received`` and webhook_events_process_stale applies it
    events.ring("payment.received", event_id=event.pk)
    return event, True


WEBHOOK_SWEEP_GRACE = timedelta(seconds=60)


def webhook_events_process_stale(*, limit: int = 200) -> int:
    """Sweeper (beat): stored deliveries still ``received`` a minute later (the enqueue failed or the worker died
    before committing). ``webhook_event_process`` locks the row and checks the status, so each applies once."""
    stale = (
        WebhookEvent.objects.filter(
            status=WebhookEvent.Status.RECEIVED, received_at__lt=timezone.now() - WEBHOOK_SWEEP_GRACE
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
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
            event.status, event.error = outcome[0], outcome[1][:2000]
        except Exception as exc:
            logger.exception("webhook event %s failed", event_id)
            event.status, event.error = WebhookEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "processed_at"])
        if event.status in (WebhookEvent.Status.REJECTED, WebhookEvent.Status.FAILED):
            admins_notify_payment_problem(provider=event.provider, event_id=event.event_id, reason=event.error)
    return event


def _whop_event_apply(event: WebhookEvent) -> tuple[str, str]:
    change = whop_event(event.payload)
    if change.action == "ignore":
        return WebhookEvent.Status.IGNORED, f"event type {change.event_type} needs no action"
    if change.action == "deactivate":
        return _whop_membership_end(change)
    if change.action == "refund":
        return _whop_refund(change)
    return _whop_membership_valid(change)


def _whop_membership_valid(change: WhopEvent) -> tuple[str, str]:
    """membership.went_valid / activated / payment.succeeded. Validity is absolute, never added: the membership's
    ``renewal_period_end``, or (a payment without it) the payment time plus the plan's period; the subscription
    keeps the later of what it has and that. So replays and the overlapping events of one purchase give one
    period, and a renewal payment a month later gives the next."""
    if not change.membership_id:
        return WebhookEvent.Status.REJECTED, f"{change.event_type} without a membership id"
    existing = Subscription.objects.select_for_update().filter(external_id=change.membership_id).first()
    plan = Plan.objects.filter(whop_plan_id=change.whop_plan_id).first() if change.whop_plan_id else None
    if plan is None and existing is not None and not change.whop_plan_id:
        plan = existing.plan
    if plan is None:
        return (
            WebhookEvent.Status.REJECTED,
            f"unknown Whop plan {change.whop_plan_id or '(none)'}: set it as the Whop plan id of a plan in the admin",
        )
    user = (
        existing.user
        if existing is not None
        else (TelegramUser.objects.filter(telegram_id=change.telegram_id).first() if change.telegram_id else None)
    )
    if user is None:
        return (
            WebhookEvent.Status.REJECTED,
            "no bot user for this membership (metadata.telegram_id "
            + ("is not a user of the bot)" if change.telegram_id else "is missing)"),
        )
    now = timezone.now()
    payment_new = False
    if change.action == "payment":
        payment, payment_new = Payment.objects.get_or_create(
            external_id=change.payment_id,
            defaults={
                "user": user,
                "plan": plan,
                "gateway": Payment.Gateway.WHOP,
                "status": Payment.Status.PAID,
                "amount_base_units": change.amount_cents or 0,
                "decimals": 2,
                "currency": change.currency,
                "paid_at": change.paid_at or now,
            },
        )
        if payment.status == Payment.Status.REFUNDED:
            return WebhookEvent.Status.IGNORED, "this payment was refunded"
    if existing is not None and existing.status != Subscription.Status.ACTIVE and not payment_new:
        return WebhookEvent.Status.IGNORED, f"membership is {existing.status}; only a new payment renews it"
    if change.period_end is not None:
        until = change.period_end
    else:
        until = (change.paid_at or now) + timedelta(days=plan.period_days)
    if existing is None:
        subscription = Subscription.objects.create(
            user=user, plan=plan, source=Subscription.Source.WHOP, external_id=change.membership_id, valid_until=until
        )
        changed = True
    else:
        subscription = existing
        new_until = max(existing.valid_until, until) if existing.valid_until else until
        changed = (
            new_until != existing.valid_until
            or existing.status != Subscription.Status.ACTIVE
            or existing.plan_id != plan.pk
        )
        subscription.valid_until, subscription.status, subscription.plan = new_until, Subscription.Status.ACTIVE, plan
        if changed:
            subscription.save(update_fields=["valid_until", "status", "plan", "updated_at"])
    if change.action == "payment":
        Payment.objects.filter(external_id=change.payment_id, subscription__isnull=True).update(
            subscription=subscription
        )
    if changed and subscription.valid_until > now:
        user_notify_subscription_active(subscription)
    return WebhookEvent.Status.PROCESSED, "" if changed else "already applied"


def _whop_membership_end(change: WhopEvent) -> tuple[str, str]:
    """Cancelled, expired or invalid: the membership gives nothing from now on (downgrade)."""
    subscription = (
        Subscription.objects.select_for_update().select_related("plan").filter(external_id=change.membership_id).first()
    )
    if subscription is None:
        return WebhookEvent.Status.IGNORED, "unknown membership"
    if subscription.status != Subscription.Status.ACTIVE:
        return WebhookEvent.Status.PROCESSED, "already ended"
    now = timezone.now()
    cancelled = change.event_type in ("membership.cancelled", "membership.canceled")
    subscription.status = Subscription.Status.CANCELLED if cancelled else Subscription.Status.EXPIRED
    subscription.valid_until = min(subscription.valid_until, now) if subscription.valid_until else now
    subscription.save(update_fields=["status", "valid_until", "updated_at"])
    user_notify_subscription_ended(subscription)
    return WebhookEvent.Status.PROCESSED, ""


def _whop_refund(change: WhopEvent) -> tuple[str, str]:
    """A refunded payment: recorded, and its membership ends now."""
    now = timezone.now()
    payment = Payment.objects.select_for_update().filter(external_id=change.payment_id).first()
    if payment is not None and payment.status == Payment.Status.PAID:
        payment.status, payment.refunded_at = Payment.Status.REFUNDED, now
        payment.save(update_fields=["status", "refunded_at"])
    membership_id = change.membership_id or (
        payment.subscription.external_id if payment is not None and payment.subscription else None
    )
    subscription = (
        Subscription.objects.select_for_update().select_related("plan").filter(external_id=membership_id).first()
        if membership_id
        else None
    )
    if subscription is None:
        return (
            WebhookEvent.Status.PROCESSED if payment else WebhookEvent.Status.IGNORED,
            "" if payment else "unknown payment and membership",
        )
    if subscription.status != Subscription.Status.REFUNDED:
        subscription.status = Subscription.Status.REFUNDED
        subscription.valid_until = min(subscription.valid_until, now) if subscription.valid_until else now
        subscription.save(update_fields=["status", "valid_until", "updated_at"])
        user_notify_subscription_ended(subscription)
    return WebhookEvent.Status.PROCESSED, ""


def _helius_event_apply(event: WebhookEvent) -> tuple[str, str]:
    """A Solana Pay payment: the transaction must pay a pending request (found by its reference key among the
    transaction's accounts) in full, in time, in the request's asset, to the merchant wallet. Then the request is
    paid (once: it records the signature) and the user gets one period of the plan."""
    transaction_ = helius_transaction_validate(event.payload)
    signature = transaction_["signature"]
    accounts = helius_accounts(transaction_)
    payment = (
        (
            Payment.objects.select_for_update()
            .select_related("plan")
            .filter(gateway=Payment.Gateway.SOLANA, reference__in=accounts)
            .first()
        )
        if accounts
        else None
    )
    if payment is None:
        return WebhookEvent.Status.REJECTED, "no payment request references this transaction (unknown reference)"
    if payment.status == Payment.Status.PAID:
        return (
            WebhookEvent.Status.REJECTED,
            f"request {payment.reference} was already paid by transaction "
            f"{payment.external_id}; this second payment is not applied (refund it if it moved money)",
        )
    if payment.status == Payment.Status.REFUNDED:
        return WebhookEvent.Status.REJECTED, f"request {payment.reference} was refunded"
    check = helius_payment_check(
        transaction_,
        reference=payment.reference,
        recipient=payment.recipient,
        mint=payment.mint,
        price_base_units=payment.amount_base_units,
        decimals=payment.decimals,
    )
    if not check.ok:
        return WebhookEvent.Status.REJECTED, f"request {payment.reference}: {check.reason}"
    now = timezone.now()
    paid_at = helius_timestamp(transaction_) or now
    if payment.expires_at is not None and paid_at > payment.expires_at:
        return (
            WebhookEvent.Status.REJECTED,
            f"request {payment.reference}: paid at {paid_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"after it expired at {payment.expires_at:%Y-%m-%d %H:%M:%S} UTC (refund or grant by hand)",
        )
    if Payment.objects.filter(external_id=signature).exists():
        return WebhookEvent.Status.REJECTED, f"transaction {signature} already paid another request"
    subscription = subscription_extend(
        user=payment.user, plan=payment.plan, days=payment.plan.period_days, source=Subscription.Source.SOLANA, now=now
    )
    payment.status, payment.external_id, payment.paid_at = Payment.Status.PAID, signature, paid_at
    payment.amount_base_units, payment.subscription = check.received_base_units, subscription
    payment.save(update_fields=["status", "external_id", "paid_at", "amount_base_units", "subscription"])
    user_notify_subscription_active(subscription)
    return WebhookEvent.Status.PROCESSED, ""
