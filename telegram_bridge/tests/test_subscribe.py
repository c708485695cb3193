"""/subscribe through the bot, end to end on the local stand-ins: the plans, a Solana Pay request (link + QR code)
paid by a Helius delivery, the confirmation message, and a locked feature unlocking; a Whop checkout link."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import entitlements
from accounts.models import Feature, Payment
from accounts.tests.factories import PlanFactory
from telegram_bridge.tests.bot_helpers import buttons, callback_data, press, say
from testsupport.helius_recorded import address_for, solana_pay_transaction
from testsupport.whop_api import WhopFakeServer

pytestmark = pytest.mark.django_db

MERCHANT = address_for("merchant-wallet")


@pytest.fixture
def shop(settings):
    settings.SOLANA_MERCHANT_WALLET, settings.HELIUS_AUTH_TOKEN = MERCHANT, "helius-token"
    return PlanFactory()


def test_subscribe_with_solana_pay_unlocks_live_trading(bot_api, shop, client, django_capture_on_commit_callbacks):
    assert "/subscribe" in say(bot_api, 701, "/toggle_paper_mode")[0]["text"]  # locked, with the way out

    [plans] = say(bot_api, 701, "/subscribe")
    assert "Pro" in plans["text"] and "29 USDC" in plans["text"] and "live auto-trading" in plans["text"]
    assert {"sub:pro:whop", "sub:pro:sol"} <= set(callback_data(plans))

    [request] = press(bot_api, 701, "sub:pro:sol", message_id=plans["message_id"])
    payment = Payment.objects.get()
    assert request["method"] == "sendPhoto" and request.get("photo")
    caption = request["text"]
    assert (
        f"solana:{MERCHANT}?amount=29&amp;spl-token=" in caption or f"solana:{MERCHANT}?amount=29&spl-token=" in caption
    )
    assert payment.reference in caption and payment.status == Payment.Status.PENDING

    transaction = solana_pay_transaction(
        recipient=MERCHANT,
        amount_base_units=29_000_000,
        reference=payment.reference,
        mint=payment.mint,
        decimals=6,
        timestamp=timezone.now(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("api:webhook-helius"),
            data=json.dumps([transaction]),
            content_type="application/json",
            headers={"authorization": "helius-token"},
        )
    assert response.status_code == 200
    confirmation = bot_api.sent_messages(701)[-1]
    assert "Payment received" in confirmation["text"] and "Pro" in confirmation["text"]
    assert entitlements.feature_unlocked(payment.user, Feature.LIVE_TRADING)
    assert "connect one with /connect" in say(bot_api, 701, "/toggle_paper_mode")[0]["text"]  # unlocked: the next step
    assert "Plan: Pro" in say(bot_api, 701, "/status")[0]["text"]


def test_card_checkout_link_and_stale_buttons(bot_api, shop, settings):
    with WhopFakeServer(api_key="k", plans={"plan_pro": 30}) as whop:
        settings.WHOP_API_BASE, settings.WHOP_API_KEY = whop.api_base, "k"
        [plans] = say(bot_api, 702, "/subscribe")
        [link] = press(bot_api, 702, "sub:pro:whop", message_id=plans["message_id"])
        [button] = buttons(link)
        checkout = whop.checkouts[whop.checkout_id_of(button["url"])]
        assert checkout["metadata"]["telegram_id"] == "702"
    assert press(bot_api, 702, "sub:gone:sol") == []  # only the callback answer: "no longer on sale"
    [again] = press(bot_api, 702, "sub:plans")  # e.g. the button under a "locked" message
    assert "Plans" in again["text"]


@pytest.mark.parametrize("sender_id", [0, -1, 2**53])
def test_updates_from_impossible_user_ids_create_no_user(sender_id):
    from accounts.models import TelegramUser
    from telegram_bridge.services import update_handle

    update_handle(
        {
            "update_id": 5000 + abs(sender_id) % 1000,
            "message": {
                "message_id": 1,
                "date": 1_790_000_000,
                "text": "/start",
                "chat": {"id": sender_id, "type": "private"},
                "from": {"id": sender_id, "is_bot": False, "first_name": "Junk"},
            },
        }
    )
    assert not TelegramUser.objects.exists()
