"""Subscriptions: starting a purchase (Whop checkout, Solana Pay request), granting time, refunds, and the
lifecycle (reminders before the end, downgrade at the end, expiry of unpaid requests).

Users hear of changes through the ``user.notify`` domain event; operators through ``admins.notify``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.html import escape

from accounts.entitlements import subscriptions_current
from accounts.gateways.whop import WhopGateway, WhopGatewayError, whop_gateway
from accounts.models import Feature, Payment, Plan, Subscription, TelegramUser
from accounts.solana_pay import amount_text, reference_new, solana_address_valid, transfer_request_url
from config.events import publish

logger = logging.getLogger(__name__)

# A pending request with less time than this left is not shown again: a fresh one is made.
SOLANA_REQUEST_REUSE_MARGIN = timedelta(minutes=5)


class CheckoutError(Exception):
    """The purchase cannot start; the message is for the user."""


# ---- reading plans -------------------------------------------------------------------------------------------------


def plans_for_sale() -> list[Plan]:
    return list(Plan.objects.filter(is_active=True))


def plan_for_sale(*, code: str) -> Plan | None:
    return Plan.objects.filter(is_active=True, code=code).first()


def plan_features_text(plan: Plan) -> str:
    return ", ".join(Feature(f).label.lower() for f in plan.features if f in Feature.values) or "no extra features"


def plan_prices_text(plan: Plan) -> str:
    prices = []
    if plan.whop_plan_id:
        prices.append(f"${plan.price_usd:.2f} by card (Whop)")
    if plan.solana_amount:
        prices.append(f"{amount_text(plan.solana_amount, plan.solana_decimals)} {plan.solana_currency} (Solana Pay)")
    return " or ".join(prices) or "not on sale"


def subscription_current(*, user: TelegramUser, now: datetime | None = None) -> Subscription | None:
    """The user's current subscription that lasts longest (open-ended first)."""
    rows = subscriptions_current(now).filter(user=user).select_related("plan")
    open_ended = rows.filter(valid_until__isnull=True).first()
    return open_ended or rows.order_by("-valid_until").first()


# ---- starting a purchase -------------------------------------------------------------------------------------------


def whop_checkout_create(*, user: TelegramUser, plan: Plan, gateway: WhopGateway | None = None) -> str:
    """A Whop checkout for ``plan`` whose metadata names the buyer; returns its purchase URL."""
    if not plan.whop_plan_id:
        raise CheckoutError(f"{plan.name} is not sold by card. Try Solana Pay.")
    redirect = f"{settings.WEB_BASE_URL.rstrip('/')}/dashboard/subscribe/" if settings.WEB_BASE_URL else ""
    try:
        checkout = (gateway or whop_gateway()).checkout_create(
            plan_id=plan.whop_plan_id,
            metadata={"telegram_id": str(user.telegram_id), "plan": plan.code},
            redirect_url=redirect,
        )
    except WhopGatewayError as error:
        logger.warning("Whop checkout for plan %s failed: %s", plan.code, error)
        raise CheckoutError(
            "Card checkout is unavailable right now. Please try again later, or pay with Solana."
        ) from None
    return checkout.purchase_url


@dataclass(frozen=True)
class SolanaPaymentRequest:
    payment: Payment
    url: str


def solana_payment_url(payment: Payment) -> str:
    return transfer_request_url(
        recipient=payment.recipient,
        amount_base_units=payment.amount_base_units,
        decimals=payment.decimals,
        mint=payment.mint,
        reference=payment.reference or "",
        label=settings.SOLANA_PAY_LABEL,
        message=f"{payment.plan.name}, {payment.plan.period_days} days",
    )


def solana_payment_request_create(
    *, user: TelegramUser, plan: Plan, now: datetime | None = None
) -> SolanaPaymentRequest:
    """A pending Solana Pay request with a fresh reference key, payable until it expires. A still-fresh pending
    request of the same user and plan is shown again instead of making another."""
    if not plan.solana_amount:
        raise CheckoutError(f"{plan.name} is not sold for Solana. Try the card checkout.")
    wallet = settings.SOLANA_MERCHANT_WALLET
    if not solana_address_valid(wallet):
        raise CheckoutError("Solana payments are not available right now.")
    now = now or timezone.now()
    pending = (
        Payment.objects.filter(
            user=user,
            plan=plan,
            gateway=Payment.Gateway.SOLANA,
            status=Payment.Status.PENDING,
            recipient=wallet,
            amount_base_units=plan.solana_amount,
            mint=plan.solana_mint,
            decimals=plan.solana_decimals,
            expires_at__gt=now + SOLANA_REQUEST_REUSE_MARGIN,
        )
        .order_by("-expires_at")
        .first()
    )
    if pending is None:
        for _ in range(3):
            try:
                with transaction.atomic():
                    pending = Payment.objects.create(
                        user=user,
                        plan=plan,
                        gateway=Payment.Gateway.SOLANA,
                        status=Payment.Status.PENDING,
                        amount_base_units=plan.solana_amount,
                        decimals=plan.solana_decimals,
                        currency=plan.solana_currency,
                        mint=plan.solana_mint,
                        recipient=wallet,
                        reference=reference_new(),
                        expires_at=now + timedelta(minutes=settings.SOLANA_PAYMENT_TTL_MINUTES),
                    )
                break
            except IntegrityError:  # a reference collision (2^-256): draw again
                continue
    return SolanaPaymentRequest(payment=pending, url=solana_payment_url(pending))


# ---- granting time -------------------------------------------------------------------------------------------------


def subscription_extend(
    *, user: TelegramUser, plan: Plan, days: int, source: str, now: datetime | None = None
) -> Subscription:
    """Add ``days`` of ``plan`` to the user's Solana/admin time of that plan (from its end, or from now when it has
    lapsed), or start it. Callers hold the transaction that makes this happen once (a paid request, an admin
    action). Whop memberships are not touched: their validity comes from Whop."""
    now = now or timezone.now()
    current = (
        Subscription.objects.select_for_update()
        .filter(user=user, plan=plan, status=Subscription.Status.ACTIVE, external_id__isnull=True)
        .order_by("-valid_until")
        .first()
    )
    if current is not None and current.valid_until is None:
        return current  # open-ended already
    if current is not None:
        current.valid_until = max(current.valid_until, now) + timedelta(days=days)
        current.save(update_fields=["valid_until", "updated_at"])
        return current
    return Subscription.objects.create(
        user=user, plan=plan, source=source, status=Subscription.Status.ACTIVE, valid_until=now + timedelta(days=days)
    )


def plan_default() -> Plan | None:
    """The plan an operator grants when they do not choose one: the first plan on sale."""
    return Plan.objects.filter(is_active=True).first() or Plan.objects.first()


@transaction.atomic
def subscription_grant(*, user: TelegramUser, days: int, plan: Plan | None = None) -> Subscription:
    """Operators: grant ``days`` of ``plan`` (default: the first plan on sale), or extend the user's time of it."""
    plan = plan or plan_default()
    if plan is None:
        raise CheckoutError("There is no plan yet: create one in the admin first.")
    subscription = subscription_extend(user=user, plan=plan, days=days, source=Subscription.Source.ADMIN)
    user_notify_subscription_active(subscription, reason="granted")
    return subscription


@transaction.atomic
def payment_refund(*, payment: Payment, note: str = "") -> Payment:
    """Operators: record a refund (the money goes back in Whop, or from the merchant wallet) and take back the time
    it bought: its subscription loses one period, and ends now if nothing is left. Refunding twice is a no-op."""
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    if payment.status != Payment.Status.PAID:
        return payment
    now = timezone.now()
    payment.status, payment.refunded_at = Payment.Status.REFUNDED, now
    payment.note = (note or payment.note)[:200]
    payment.save(update_fields=["status", "refunded_at", "note"])
    if payment.subscription_id:
        subscription = Subscription.objects.select_for_update().get(pk=payment.subscription_id)
        if subscription.valid_until is not None and subscription.status == Subscription.Status.ACTIVE:
            subscription.valid_until -= timedelta(days=payment.plan.period_days)
            if subscription.valid_until <= now:
                subscription.valid_until, subscription.status = now, Subscription.Status.REFUNDED
            subscription.save(update_fields=["valid_until", "status", "updated_at"])
            if subscription.status != Subscription.Status.ACTIVE:
                user_notify_subscription_ended(subscription)
    return payment


# ---- telling the user ----------------------------------------------------------------------------------------------


def user_notify_subscription_active(subscription: Subscription, *, reason: str = "paid") -> None:
    """The confirmation: once per (subscription, end date), whatever replays or retries happen."""
    until = f"until {subscription.valid_until:%Y-%m-%d %H:%M} UTC" if subscription.valid_until else "with no end date"
    opening = {"paid": "✅ Payment received. Thank you!", "granted": "🎁 You were given a subscription."}[reason]
    text = (
        f"{opening}\n<b>{escape(subscription.plan.name)}</b> is active {until}.\n"
        f"Unlocked: {escape(plan_features_text(subscription.plan))}."
    )
    stamp = int(subscription.valid_until.timestamp()) if subscription.valid_until else "open"
    publish(
        "user.notify",
        user_id=subscription.user_id,
        text=text,
        dedupe_key=f"subscription:{subscription.pk}:active:{stamp}",
    )


def user_notify_subscription_ended(subscription: Subscription) -> None:
    text = (
        f"Your <b>{escape(subscription.plan.name)}</b> plan has ended ({escape(subscription.status)}). Signals "
        "stay free. Positions already open are kept and managed to their exits; paid features are off and no "
        "new positions are opened with them. Send /subscribe to renew."
    )
    publish(
        "user.notify",
        user_id=subscription.user_id,
        text=text,
        dedupe_key=f"subscription:{subscription.pk}:ended:{subscription.status}",
    )


def admins_notify_payment_problem(*, provider: str, event_id: str, reason: str) -> None:
    text = (
        f"⚠️ <b>Payment not applied</b> ({escape(provider)} {escape(event_id[:24])}…)\n{escape(reason)}\n"
        "See Webhook events in the admin (status rejected)."
    )
    publish("admins.notify", text=text, dedupe_key=f"payment-problem:{provider}:{event_id[:120]}")


# ---- lifecycle (beat) ----------------------------------------------------------------------------------------------


def subscriptions_remind(*, now: datetime | None = None) -> int:
    """Remind users whose Solana or admin time ends within ``SUBSCRIPTION_REMINDER_DAYS`` (Whop renews and
    reminds by itself); once per end date. Returns the number of reminders."""
    now = now or timezone.now()
    ending = (
        Subscription.objects.select_related("plan")
        .filter(
            status=Subscription.Status.ACTIVE,
            external_id__isnull=True,
            valid_until__gt=now,
            valid_until__lte=now + timedelta(days=settings.SUBSCRIPTION_REMINDER_DAYS),
        )
        .exclude(reminded_for=F("valid_until"))
    )
    count = 0
    for subscription in ending:
        with transaction.atomic():
            claimed = (
                Subscription.objects.filter(pk=subscription.pk)
                .exclude(reminded_for=F("valid_until"))
                .update(reminded_for=subscription.valid_until)
            )
            if not claimed:
                continue
            left = subscription.valid_until - now
            days = max(1, round(left.total_seconds() / 86400))
            text = (
                f"⏳ Your <b>{escape(subscription.plan.name)}</b> plan ends in about {days} day(s), on "
                f"{subscription.valid_until:%Y-%m-%d %H:%M} UTC. Send /subscribe to renew and keep "
                f"{escape(plan_features_text(subscription.plan))}."
            )
            publish(
                "user.notify",
                user_id=subscription.user_id,
                text=text,
                dedupe_key=f"subscription:{subscription.pk}:reminder:{int(subscription.valid_until.timestamp())}",
            )
            count += 1
    return count


def subscriptions_expire(*, now: datetime | None = None) -> int:
    """Downgrade at the end: active subscriptions past ``valid_until`` become expired, and their users are told.
    (Entitlements already stop at ``valid_until``; this makes the status say so and sends the message once.)"""
    now = now or timezone.now()
    ended = list(
        Subscription.objects.select_related("plan")
        .filter(status=Subscription.Status.ACTIVE, valid_until__lte=now)
        .values_list("pk", flat=True)
    )
    for pk in ended:
        with transaction.atomic():
            if Subscription.objects.filter(pk=pk, status=Subscription.Status.ACTIVE, valid_until__lte=now).update(
                status=Subscription.Status.EXPIRED, updated_at=now
            ):
                user_notify_subscription_ended(Subscription.objects.select_related("plan").get(pk=pk))
    return len(ended)


def subscriptions_end_now(*, subscriptions: list[Subscription], now: datetime | None = None) -> list[Subscription]:
    """An operator ends subscriptions at once (a downgrade): the active ones become cancelled, valid until now, and
    their users are told, as at a natural end. Returns the ones ended."""
    now = now or timezone.now()
    ended = []
    for subscription in subscriptions:
        with transaction.atomic():
            if Subscription.objects.filter(pk=subscription.pk, status=Subscription.Status.ACTIVE).update(
                status=Subscription.Status.CANCELLED, valid_until=now, updated_at=now
            ):
                row = Subscription.objects.select_related("plan").get(pk=subscription.pk)
                user_notify_subscription_ended(row)
                ended.append(row)
    return ended


def payment_requests_expire(*, now: datetime | None = None) -> int:
    """Unpaid Solana Pay requests past their end become expired (a payment arriving later is rejected and
    reported to operators)."""
    now = now or timezone.now()
    return Payment.objects.filter(status=Payment.Status.PENDING, expires_at__lte=now).update(
        status=Payment.Status.EXPIRED
    )


def subscriptions_lifecycle(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    return {
        "reminded": subscriptions_remind(now=now),
        "expired": subscriptions_expire(now=now),
        "requests_expired": payment_requests_expire(now=now),
    }
