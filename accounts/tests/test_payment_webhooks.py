"""Payment webhooks: Standard Webhooks (Whop) signature against the spec's published example, replay window,
idempotency, malformed bodies; Helius authorization header; subscriptions updated by the Celery work."""

import json
import time
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Subscription, WebhookEvent
from accounts.payment_webhooks import (
    WebhookAuthenticationError,
    WebhookPayloadError,
    authorization_verify,
    helius_transactions,
    standard_webhooks_sign,
    standard_webhooks_verify,
    whop_membership_change,
)
from accounts.payments import webhook_event_process
from accounts.tests.factories import SubscriptionFactory, TelegramUserFactory

# The example published with the Standard Webhooks specification (and its reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

HELIUS_TOKEN = "helius-test-token-1"
REFERENCE = "Ref1111111111111111111111111111111111111111"
TX_SIGNATURE = "5" * 88


class TestStandardWebhooksScheme:
    def spec_headers(self, signature=SPEC_SIGNATURE, **overrides):
        headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": signature}
        return {**headers, **overrides}

    def test_signs_the_spec_example_exactly(self):
        assert standard_webhooks_sign(secret=SPEC_SECRET, msg_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY) == SPEC_SIGNATURE

    def test_verifies_the_spec_example_within_the_tolerance(self):
        msg_id = standard_webhooks_verify(secret=SPEC_SECRET, headers=self.spec_headers(), body=SPEC_BODY,
                                          now=SPEC_TIMESTAMP + 299)
        assert msg_id == SPEC_ID

    def test_any_of_several_signatures_may_match(self):
        headers = self.spec_headers(signature=f"v1,bm9wZQ== {SPEC_SIGNATURE}")
        assert standard_webhooks_verify(secret=SPEC_SECRET, headers=headers, body=SPEC_BODY, now=SPEC_TIMESTAMP)

    @pytest.mark.parametrize("now", [SPEC_TIMESTAMP + 301, SPEC_TIMESTAMP - 301])
    def test_a_replay_outside_five_minutes_is_rejected(self, now):
        with pytest.raises(WebhookAuthenticationError, match="5 minutes"):
            standard_webhooks_verify(secret=SPEC_SECRET, headers=self.spec_headers(), body=SPEC_BODY, now=now)

    @pytest.mark.parametrize(
        ("headers", "body"),
        [
            ({}, b'{"test": 2432232315}'),  # body changed by one digit
            ({"webhook-id": "msg_other"}, SPEC_BODY),  # id is part of the signed content
            ({"webhook-signature": "v1,AAAA"}, SPEC_BODY),
            ({"webhook-signature": ""}, SPEC_BODY),
            ({"webhook-timestamp": "soon"}, SPEC_BODY),
            ({"webhook-signature": SPEC_SIGNATURE.replace("v1,", "v2,")}, SPEC_BODY),
        ],
    )
    def test_tampering_is_rejected(self, headers, body):
        with pytest.raises(WebhookAuthenticationError):
            standard_webhooks_verify(secret=SPEC_SECRET, headers=self.spec_headers(**headers), body=body, now=SPEC_TIMESTAMP)

    def test_wrong_or_missing_secret_is_rejected(self):
        with pytest.raises(WebhookAuthenticationError):
            standard_webhooks_verify(secret="whsec_" + "A" * 32, headers=self.spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP)
        with pytest.raises(WebhookAuthenticationError):
            standard_webhooks_verify(secret="", headers=self.spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP)

    def test_helius_authorization_header(self):
        authorization_verify(expected=HELIUS_TOKEN, received=HELIUS_TOKEN)
        for received in ("", "Bearer x", HELIUS_TOKEN + " "):
            with pytest.raises(WebhookAuthenticationError):
                authorization_verify(expected=HELIUS_TOKEN, received=received)
        with pytest.raises(WebhookAuthenticationError):
            authorization_verify(expected="", received="")


class TestPayloadParsing:
    def test_whop_activation(self):
        change = whop_membership_change({"type": "membership.activated", "data": {
            "id": "mem_1", "metadata": {"telegram_id": "42"}, "plan_id": "plan_pro", "final_amount": "29.99",
            "currency": "usd", "renewal_period_end": 1_790_000_000}})
        assert (change.active, change.membership_id, change.telegram_id, change.plan) == (True, "mem_1", 42, "plan_pro")
        assert change.amount == Decimal("29.99") and change.currency == "USD"
        assert change.valid_until.timestamp() == 1_790_000_000

    @pytest.mark.parametrize("payload", [[], {"type": "x"}, {"data": {"id": "m"}}, {"type": "membership.activated", "data": {}}])
    def test_whop_malformed(self, payload):
        with pytest.raises(WebhookPayloadError):
            whop_membership_change(payload)

    @pytest.mark.parametrize("payload", [[], "x", [1], [{"signature": "short"}]])
    def test_helius_malformed(self, payload):
        with pytest.raises(WebhookPayloadError):
            helius_transactions(payload)


def whop_payload(*, event_type="membership.activated", membership="mem_abc", telegram_id=None, **data):
    body = {"id": membership, "plan_id": "plan_pro", "final_amount": "29.99", "currency": "usd", **data}
    if telegram_id is not None:
        body["metadata"] = {"telegram_id": str(telegram_id)}
    return {"type": event_type, "data": body}


@pytest.fixture
def whop(settings, client):
    settings.WHOP_WEBHOOK_SECRET = SPEC_SECRET

    def post(payload, *, msg_id="msg_1", timestamp=None, secret=SPEC_SECRET, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = standard_webhooks_sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
        return client.post(reverse("api:webhook-whop"), data=body, content_type="application/json",
                           headers={"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature})

    return post


@pytest.fixture
def helius(settings, client):
    settings.HELIUS_AUTH_TOKEN = HELIUS_TOKEN

    def post(payload, *, token=HELIUS_TOKEN, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        return client.post(reverse("api:webhook-helius"), data=body, content_type="application/json",
                           headers={"authorization": token})

    return post


def solana_payment(*, signature=TX_SIGNATURE, usdc="25"):
    return {"signature": signature, "type": "TRANSFER", "accountData": [{"account": REFERENCE}],
            "tokenTransfers": [{"tokenAmount": usdc, "mint": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"}]}


@pytest.mark.django_db
class TestWhopEndpoint:
    def test_activation_creates_the_subscription_through_celery(self, whop, django_capture_on_commit_callbacks):
        user = TelegramUserFactory(telegram_id=777)
        with django_capture_on_commit_callbacks(execute=True):
            response = whop(whop_payload(telegram_id=777))
        assert response.status_code == 200 and response.json() == {"status": "accepted"}
        subscription = Subscription.objects.get(external_id="mem_abc")
        assert subscription.user == user and subscription.status == Subscription.Status.ACTIVE
        assert subscription.amount == Decimal("29.99") and subscription.source == Subscription.Source.WHOP
        assert subscription.is_current
        assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED

    def test_the_same_event_id_twice_changes_nothing(self, whop, django_capture_on_commit_callbacks):
        TelegramUserFactory(telegram_id=777)
        with django_capture_on_commit_callbacks(execute=True):
            whop(whop_payload(telegram_id=777), msg_id="msg_dup")
        first = Subscription.objects.get(external_id="mem_abc")
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = whop(whop_payload(telegram_id=777), msg_id="msg_dup")  # retried delivery: fresh signature
        assert response.status_code == 200 and response.json() == {"status": "duplicate"}
        assert callbacks == []  # no second Celery task
        again = Subscription.objects.get(external_id="mem_abc")
        assert again.valid_until == first.valid_until and WebhookEvent.objects.count() == 1
        # processing the stored event again (a crashed worker's retry) is a no-op too
        event = WebhookEvent.objects.get()
        assert webhook_event_process(event_id=event.pk).status == WebhookEvent.Status.PROCESSED
        assert Subscription.objects.get(external_id="mem_abc").valid_until == first.valid_until

    def test_cancellation_deactivates(self, whop, django_capture_on_commit_callbacks):
        SubscriptionFactory(external_id="mem_abc")
        with django_capture_on_commit_callbacks(execute=True):
            whop(whop_payload(event_type="membership.went_invalid"), msg_id="msg_2")
        assert Subscription.objects.get(external_id="mem_abc").status == Subscription.Status.CANCELLED

    def test_unknown_user_is_ignored_not_failed(self, whop, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            assert whop(whop_payload(telegram_id=999)).status_code == 200
        assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED
        assert not Subscription.objects.exists()

    def test_bad_signature_is_401(self, whop):
        response = whop(whop_payload(), secret="whsec_" + "B" * 32)
        assert response.status_code == 401 and not WebhookEvent.objects.exists()

    def test_stale_timestamp_is_401(self, whop):
        assert whop(whop_payload(), timestamp=int(time.time()) - 600).status_code == 401

    def test_missing_headers_is_401(self, client, settings):
        settings.WHOP_WEBHOOK_SECRET = SPEC_SECRET
        assert client.post(reverse("api:webhook-whop"), data="{}", content_type="application/json").status_code == 401

    @pytest.mark.parametrize("raw", [b"not json", b"\xff\xfe", b"[]", b'{"type": "membership.activated"}', b"[" * 5000])
    def test_malformed_signed_body_is_400(self, whop, raw):
        assert whop(None, raw=raw).status_code == 400
        assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
class TestHeliusEndpoint:
    def test_payment_activates_the_pending_subscription_once(self, helius, django_capture_on_commit_callbacks):
        pending = SubscriptionFactory(source=Subscription.Source.SOLANA, status=Subscription.Status.PENDING,
                                      external_id=REFERENCE)
        with django_capture_on_commit_callbacks(execute=True):
            response = helius([solana_payment()])
        assert response.status_code == 200 and response.json() == {"status": "accepted", "events": 1}
        pending.refresh_from_db()
        assert pending.status == Subscription.Status.ACTIVE and pending.amount == Decimal("25")
        assert pending.currency == "USDC"
        valid_until = pending.valid_until
        with django_capture_on_commit_callbacks(execute=True):
            again = helius([solana_payment()])
        assert again.json() == {"status": "duplicate", "events": 0}
        pending.refresh_from_db()
        assert pending.valid_until == valid_until

    def test_unrelated_transaction_is_ignored(self, helius, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            assert helius([solana_payment(signature="6" * 88)]).status_code == 200
        assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED

    @pytest.mark.parametrize("token", ["", "wrong", f"Bearer {HELIUS_TOKEN}x"])
    def test_wrong_authorization_is_401(self, helius, token):
        assert helius([solana_payment()], token=token).status_code == 401

    @pytest.mark.parametrize("raw", [b"{", b"[]", b'[{"signature": 1}]', b'"text"'])
    def test_malformed_body_is_400(self, helius, raw):
        assert helius(None, raw=raw).status_code == 400


@pytest.mark.django_db
class TestNothingStoredIsLost:
    """The view answers once the delivery is stored; a failed enqueue is caught up by the beat sweeper, once."""

    def test_a_failed_enqueue_answers_200_and_the_sweeper_applies_the_event_once(
            self, helius, monkeypatch, django_capture_on_commit_callbacks):
        from datetime import timedelta

        from django.utils import timezone

        from accounts import tasks

        pending = SubscriptionFactory(source=Subscription.Source.SOLANA, status=Subscription.Status.PENDING,
                                      external_id=REFERENCE)

        def broker_down(**kwargs):
            raise ConnectionError("Error 111 connecting to redis")

        monkeypatch.setattr(tasks.webhook_event_process, "delay", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            response = helius([solana_payment()])
        assert response.status_code == 200 and response.json() == {"status": "accepted", "events": 1}
        event = WebhookEvent.objects.get()
        assert event.status == WebhookEvent.Status.RECEIVED
        assert tasks.webhook_events_process_stale.run() == 0  # within the grace left to its own task
        WebhookEvent.objects.update(received_at=timezone.now() - timedelta(minutes=2))
        assert tasks.webhook_events_process_stale.run() == 1
        assert tasks.webhook_events_process_stale.run() == 0
        pending.refresh_from_db()
        assert pending.status == Subscription.Status.ACTIVE
        valid_until = pending.valid_until
        assert webhook_event_process(event_id=event.pk).status == WebhookEvent.Status.PROCESSED  # a late task: no-op
        pending.refresh_from_db()
        assert pending.valid_until == valid_until
