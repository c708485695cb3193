"""The demo's subscription: a user buys a plan through the bot and a locked feature unlocks — on the local stand-ins.

    from demo.offline import demo_bot_api
    from demo.subscribe import demo_subscribe_through_bot

    with demo_bot_api() as bot_api:
        report = demo_subscribe_through_bot(bot_api, telegram_id=900001, name="alice")
        print("\\n\\n".join(bot_api.transcript(900001)))

The steps, all through the real paths: the user asks to go live (``/toggle_paper_mode``) and is told live
auto-trading is part of a plan; sends ``/subscribe``; presses "◎ Pro with Solana" (the bot answers with the Solana
Pay link and its QR code, a pending request with a fresh reference key); a wallet pays it exactly (a Helius
enhanced-transaction delivery from ``testsupport.helius_recorded``, posted to ``/api/webhooks/helius/`` with the
Helius authorization header); the bot confirms the plan; the user asks to go live again and is now past the lock
(the next step is ``/connect``). A demo merchant wallet and Helius token are used when none is configured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.entitlements import feature_unlocked
from accounts.models import Feature, Payment, Plan, TelegramUser
from accounts.solana_pay import solana_address_valid
from telegram_bridge.bridge import polling_run
from testsupport.helius_recorded import USDC_MINT, address_for, solana_pay_transaction
from testsupport.telegram_bot_api import LocalBotAPIServer

DEMO_MERCHANT_WALLET = address_for("demo-merchant-wallet")
DEMO_HELIUS_TOKEN = "demo-helius-token"  # noqa: S105 — the local demo's stand-in token


@dataclass(frozen=True)
class DemoSubscription:
    user: TelegramUser
    payment: Payment
    locked_before: bool
    unlocked_after: bool
    webhook_status: int


def demo_plan() -> Plan:
    """The demo's plan (the demo database starts empty): Pro, every feature, 29 USDC or $29 for 30 days."""
    plan, _ = Plan.objects.get_or_create(
        code="pro",
        defaults={
            "name": "Pro",
            "period_days": 30,
            "features": list(Feature.values),
            "price_usd": 29,
            "solana_amount": 29_000_000,
            "solana_mint": USDC_MINT,
            "solana_decimals": 6,
            "description": "Live auto-trading, news and order-flow alerts, more open positions.",
        },
    )
    return plan


def _say(server: LocalBotAPIServer, telegram_id: int, name: str, text: str) -> None:
    server.inject_message(user_id=telegram_id, text=text, first_name=name.title(), username=name)
    if polling_run(timeout=1, max_updates=1) != 1:
        raise RuntimeError(f"the bridge did not handle {text!r}")


def demo_subscribe_through_bot(server: LocalBotAPIServer, *, telegram_id: int, name: str) -> DemoSubscription:
    """One user subscribes with Solana Pay through the bot; see the module docstring for the steps."""
    wallet = (
        settings.SOLANA_MERCHANT_WALLET
        if solana_address_valid(settings.SOLANA_MERCHANT_WALLET)
        else DEMO_MERCHANT_WALLET
    )
    token = settings.HELIUS_AUTH_TOKEN or DEMO_HELIUS_TOKEN
    with override_settings(SOLANA_MERCHANT_WALLET=wallet, HELIUS_AUTH_TOKEN=token):
        plan = demo_plan()
        _say(server, telegram_id, name, "/start")
        user = TelegramUser.objects.get(telegram_id=telegram_id)
        locked_before = not feature_unlocked(user, Feature.LIVE_TRADING)
        _say(server, telegram_id, name, "/toggle_paper_mode")
        _say(server, telegram_id, name, "/subscribe")
        plans_message = server.sent_messages(telegram_id)[-1]
        server.inject_callback(
            user_id=telegram_id,
            data=f"sub:{plan.code}:sol",
            message_id=plans_message["message_id"],
            username=name,
            first_name=name.title(),
        )
        if polling_run(timeout=1, max_updates=1) != 1:
            raise RuntimeError("the bridge did not handle the payment button")
        payment = Payment.objects.filter(user=user, status=Payment.Status.PENDING).latest("created_at")
        transaction = solana_pay_transaction(
            recipient=payment.recipient,
            amount_base_units=payment.amount_base_units,
            reference=payment.reference,
            mint=payment.mint,
            decimals=payment.decimals,
            payer=address_for(f"wallet-of-{name}"),
            timestamp=timezone.now(),
        )
        response = Client().post(
            reverse("api:webhook-helius"),
            data=json.dumps([transaction]),
            content_type="application/json",
            headers={"authorization": token},
        )
        payment.refresh_from_db()
        _say(server, telegram_id, name, "/toggle_paper_mode")
        return DemoSubscription(
            user=user,
            payment=payment,
            locked_before=locked_before,
            unlocked_after=feature_unlocked(user, Feature.LIVE_TRADING),
            webhook_status=response.status_code,
        )
