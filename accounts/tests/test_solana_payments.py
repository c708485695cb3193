"""Solana Pay: transfer request URLs per the spec, unique references, and a verification that only the exact
payment (succeeded, referenced, to the merchant, in the plan's asset, at least the price, in time) activates — once.
The deliveries are Helius enhanced transactions in the documented shape (testsupport.helius_recorded)."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import entitlements
from accounts.models import Feature, Payment, Subscription, WebhookEvent
from accounts.solana_pay import (
    amount_text,
    b58decode,
    b58encode,
    reference_new,
    solana_address_valid,
    transfer_request_url,
)
from accounts.subscriptions import (
    CheckoutError,
    payment_requests_expire,
    solana_payment_request_create,
)
from accounts.tests.conftest import HELIUS_TOKEN, MERCHANT
from accounts.tests.factories import USDC_MINT, PlanFactory, TelegramUserFactory
from testsupport.helius_recorded import USDT_MINT, address_for, signature_for, solana_pay_transaction


class TestBase58AndReferences:
    def test_known_vectors(self):
        assert b58encode(b"hello world") == "StV1DL6CwTryKyV"
        assert b58decode("StV1DL6CwTryKyV") == b"hello world"
        assert b58decode("11111111111111111111111111111111") == bytes(32)  # the system program
        assert b58encode(b"\0\0\x01") == "112"

    def test_references_are_unique_public_key_shaped(self):
        references = {reference_new() for _ in range(200)}
        assert len(references) == 200
        assert all(solana_address_valid(r) and len(b58decode(r)) == 32 for r in references)

    @pytest.mark.parametrize("text", ["", "0OIl" * 10, "abc", "1" * 45, 123, None, "StV1DL6CwTryKyV"])
    def test_invalid_addresses(self, text):
        assert not solana_address_valid(text)

    @pytest.mark.parametrize(
        ("units", "decimals", "text"),
        [(29_000_000, 6, "29"), (150_000_000, 9, "0.15"), (1, 9, "0.000000001"), (10**12, 6, "1000000"), (0, 6, "0")],
    )
    def test_amounts_are_plain_decimals(self, units, decimals, text):
        assert amount_text(units, decimals) == text


class TestTransferRequestUrl:
    def test_spl_token_request_follows_the_spec(self):
        reference = reference_new()
        url = transfer_request_url(
            recipient=MERCHANT,
            amount_base_units=29_000_000,
            decimals=6,
            mint=USDC_MINT,
            reference=reference,
            label="Perps Signals",
            message="Pro, 30 days & more",
        )
        parts = urlsplit(url)
        assert parts.scheme == "solana" and parts.path == MERCHANT
        query = parse_qs(parts.query)
        assert query == {
            "amount": ["29"],
            "spl-token": [USDC_MINT],
            "reference": [reference],
            "label": ["Perps Signals"],
            "message": ["Pro, 30 days & more"],
        }
        assert "label=Perps%20Signals" in url and "message=Pro%2C%2030%20days%20%26%20more" in url
        assert list(dict.fromkeys(k.split("=")[0] for k in parts.query.split("&"))) == [
            "amount",
            "spl-token",
            "reference",
            "label",
            "message",
        ]

    def test_native_sol_request_has_no_spl_token(self):
        url = transfer_request_url(
            recipient=MERCHANT,
            amount_base_units=150_000_000,
            decimals=9,
            mint="",
            reference=reference_new(),
            label="",
            message="",
        )
        assert "spl-token" not in url and parse_qs(urlsplit(url).query)["amount"] == ["0.15"]


@pytest.mark.django_db
class TestPaymentRequests:
    def test_a_request_is_pending_unique_and_expires(self, payment_settings):
        plan = PlanFactory()
        alice, bob = TelegramUserFactory.create_batch(2)
        first = solana_payment_request_create(user=alice, plan=plan)
        other = solana_payment_request_create(user=bob, plan=plan)
        payment = first.payment
        assert payment.status == Payment.Status.PENDING and payment.recipient == MERCHANT
        assert (payment.amount_base_units, payment.decimals, payment.mint, payment.currency) == (
            29_000_000,
            6,
            USDC_MINT,
            "USDC",
        )
        assert payment.reference != other.payment.reference
        assert f"reference={payment.reference}" in first.url and first.url.startswith(f"solana:{MERCHANT}?amount=29&")
        assert unquote(parse_qs(urlsplit(first.url).query)["message"][0]) == "Pro, 30 days"
        assert timedelta(minutes=29) < payment.expires_at - timezone.now() <= timedelta(minutes=30)
        # asking again while it is fresh shows the same request; once it is about to expire, a new one
        assert solana_payment_request_create(user=alice, plan=plan).payment == payment
        later = timezone.now() + timedelta(minutes=26)
        assert solana_payment_request_create(user=alice, plan=plan, now=later).payment != payment
        assert payment_requests_expire(now=timezone.now() + timedelta(minutes=31)) == 2  # not the later one
        payment.refresh_from_db()
        assert payment.status == Payment.Status.EXPIRED

    def test_without_a_merchant_wallet_or_a_solana_price_there_is_no_request(self, payment_settings):
        user = TelegramUserFactory()
        with pytest.raises(CheckoutError):
            solana_payment_request_create(user=user, plan=PlanFactory(code="card", solana_amount=None))
        payment_settings.SOLANA_MERCHANT_WALLET = "not-a-wallet"
        with pytest.raises(CheckoutError):
            solana_payment_request_create(user=user, plan=PlanFactory())
        assert not Payment.objects.exists()


@pytest.fixture
def helius(client, payment_settings, django_capture_on_commit_callbacks):
    def post(*transactions, token=HELIUS_TOKEN, raw=None):
        body = raw if raw is not None else json.dumps(list(transactions)).encode()
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                reverse("api:webhook-helius"),
                data=body,
                content_type="application/json",
                headers={"authorization": token},
            )

    return post


@pytest.fixture
def request_(payment_settings):
    """A pending USDC request of the Pro plan (29 USDC = 29 000 000 base units)."""
    user = TelegramUserFactory()
    return solana_payment_request_create(user=user, plan=PlanFactory()).payment


def paying(payment: Payment, **overrides) -> dict:
    """The transaction a wallet makes for ``payment`` (the exact payment unless overridden)."""
    fields = {
        "recipient": payment.recipient,
        "amount_base_units": payment.amount_base_units,
        "reference": payment.reference,
        "mint": payment.mint,
        "decimals": payment.decimals,
        "timestamp": timezone.now(),
    }
    return solana_pay_transaction(**{**fields, **overrides})


def assert_not_activated(payment: Payment, published, reason: str) -> None:
    payment.refresh_from_db()
    assert payment.status in (Payment.Status.PENDING, Payment.Status.EXPIRED) and payment.external_id is None
    assert not Subscription.objects.exists()
    assert not entitlements.feature_unlocked(payment.user, Feature.LIVE_TRADING)
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED and reason in event.error
    assert [e for e, _ in published] == ["admins.notify"]
    assert reason in published[0][1]["text"]


@pytest.mark.django_db
class TestVerificationCannotBeFooled:
    def test_a_failed_transaction_does_not_activate(self, helius, request_, published):
        assert helius(paying(request_, failed=True)).status_code == 200
        assert_not_activated(request_, published, "failed on chain")

    @pytest.mark.parametrize("units", [1, 28_999_999])
    def test_dust_or_one_unit_short_does_not_activate(self, helius, request_, published, units):
        helius(paying(request_, amount_base_units=units))
        assert_not_activated(request_, published, "less than the price 29 USDC")

    def test_a_payment_to_another_wallet_does_not_activate(self, helius, request_, published):
        helius(paying(request_, recipient=address_for("somebody-else")))
        assert_not_activated(request_, published, "nothing reached the merchant wallet")

    def test_another_token_does_not_activate(self, helius, request_, published):
        helius(paying(request_, mint=USDT_MINT))
        assert_not_activated(request_, published, "wrong token mint (USDT)")

    def test_sol_for_a_usdc_price_does_not_activate(self, helius, request_, published):
        helius(paying(request_, mint="", decimals=9, amount_base_units=10**12))
        assert_not_activated(request_, published, "paid in SOL")

    def test_a_token_with_other_decimals_does_not_activate(self, helius, request_, published):
        helius(paying(request_, decimals=9, amount_base_units=29 * 10**9))
        assert_not_activated(request_, published, "the token has 9 decimals")

    def test_a_wrong_or_missing_reference_does_not_activate(self, helius, request_, published):
        helius(paying(request_, reference=reference_new()))
        assert_not_activated(request_, published, "unknown reference")
        published.clear()
        WebhookEvent.objects.all().delete()
        helius(paying(request_, reference=None))
        assert_not_activated(request_, published, "unknown reference")

    def test_a_late_payment_after_expiry_does_not_activate(self, helius, request_, published):
        payment_requests_expire(now=request_.expires_at + timedelta(seconds=1))
        helius(paying(request_, timestamp=request_.expires_at + timedelta(seconds=5)))
        assert_not_activated(request_, published, "after it expired")

    def test_the_exact_payment_activates_once(self, helius, request_, published):
        transaction = paying(request_)
        response = helius(transaction)
        assert response.status_code == 200 and response.json() == {"status": "accepted", "events": 1}
        request_.refresh_from_db()
        assert request_.status == Payment.Status.PAID and request_.external_id == transaction["signature"]
        assert request_.amount_base_units == 29_000_000
        subscription = Subscription.objects.get()
        assert subscription.user == request_.user and subscription.source == Subscription.Source.SOLANA
        assert timedelta(days=29, hours=23) < subscription.valid_until - timezone.now() <= timedelta(days=30)
        assert entitlements.feature_unlocked(request_.user, Feature.LIVE_TRADING)
        assert [e for e, _ in published] == ["user.notify"]
        assert "Payment received" in published[0][1]["text"] and published[0][1]["user_id"] == request_.user_id
        valid_until = subscription.valid_until

        # the same signature again (Helius retries): stored once, nothing more
        assert helius(transaction).json() == {"status": "duplicate", "events": 0}
        # another transaction paying the same reference: stored, not applied, reported
        second = paying(request_, signature=signature_for("second payment"))
        helius(second)
        subscription.refresh_from_db()
        assert subscription.valid_until == valid_until and Subscription.objects.count() == 1
        rejected = WebhookEvent.objects.get(event_id=second["signature"])
        assert rejected.status == WebhookEvent.Status.REJECTED and "already paid" in rejected.error
        assert [e for e, _ in published] == ["user.notify", "admins.notify"]

    def test_overpayment_activates_and_books_what_was_received(self, helius, request_, published):
        helius(paying(request_, amount_base_units=30_000_000))
        request_.refresh_from_db()
        assert request_.status == Payment.Status.PAID and request_.amount_base_units == 30_000_000

    def test_exact_amounts_come_from_raw_balance_changes_when_transfers_carry_only_ui_amounts(
        self, helius, request_, published
    ):
        short = paying(request_, amount_base_units=28_999_999, raw_in_token_transfers=False)
        short["tokenTransfers"][0]["tokenAmount"] = 29.0  # a rounded UI float must not pass for the price
        helius(short)
        assert_not_activated(request_, published, "less than the price")
        WebhookEvent.objects.all().delete()
        helius(paying(request_, raw_in_token_transfers=False, signature=signature_for("exact")))
        request_.refresh_from_db()
        assert request_.status == Payment.Status.PAID

    def test_native_sol_plan_to_the_lamport(self, helius, payment_settings, published):
        plan = PlanFactory(code="sol", whop_plan_id=None, solana_amount=150_000_000, solana_mint="", solana_decimals=9)
        payment = solana_payment_request_create(user=TelegramUserFactory(), plan=plan).payment
        assert (payment.currency, payment.mint) == ("SOL", "")
        helius(paying(payment, amount_base_units=149_999_999))
        payment.refresh_from_db()
        assert payment.status == Payment.Status.PENDING
        helius(paying(payment, signature=signature_for("full")))
        payment.refresh_from_db()
        assert payment.status == Payment.Status.PAID and payment.amount_base_units == 150_000_000

    def test_a_second_paid_request_extends_from_the_end(self, helius, request_, published):
        helius(paying(request_))
        first_end = Subscription.objects.get().valid_until
        renewal = solana_payment_request_create(user=request_.user, plan=request_.plan).payment
        assert renewal != request_
        helius(paying(renewal))
        subscription = Subscription.objects.get()
        assert subscription.valid_until == first_end + timedelta(days=30)
