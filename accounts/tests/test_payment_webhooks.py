"""Payment webhooks: Standard Webhooks (Whop) signature against the spec's published example, replay window,
idempotency; strict input validation (impossible ids, times, amounts and strings answer 400 and create nothing);
Helius authorization header; a stored delivery is never lost."""

import json
import time

import pytest
from django.urls import reverse

from accounts.models import Payment, Subscription, TelegramUser, WebhookEvent
from accounts.payment_webhooks import (
    WebhookAuthenticationError,
    WebhookPayloadError,
    authorization_verify,
    helius_transactions,
    json_body,
    standard_webhooks_sign,
    standard_webhooks_verify,
    whop_event,
)
from accounts.payments import webhook_event_process
from accounts.subscriptions import solana_payment_request_create
from accounts.tests.factories import PlanFactory, TelegramUserFactory
from testsupport.helius_recorded import solana_pay_transaction

# The example published with the Standard Webhooks specification (and its reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

HELIUS_TOKEN = "helius-test-token-1"
MERCHANT_SAMPLE = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"


class TestStandardWebhooksScheme:
    def spec_headers(self, signature=SPEC_SIGNATURE, **overrides):
        headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": signature}
        return {**headers, **overrides}

    def test_signs_the_spec_example_exactly(self):
        assert (
            standard_webhooks_sign(secret=SPEC_SECRET, msg_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
            == SPEC_SIGNATURE
        )

    def test_verifies_the_spec_example_within_the_tolerance(self):
        msg_id = standard_webhooks_verify(
            secret=SPEC_SECRET, headers=self.spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP + 299
        )
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
            standard_webhooks_verify(
                secret=SPEC_SECRET, headers=self.spec_headers(**headers), body=body, now=SPEC_TIMESTAMP
            )

    def test_wrong_or_missing_secret_is_rejected(self):
        with pytest.raises(WebhookAuthenticationError):
            standard_webhooks_verify(
                secret="whsec_" + "A" * 32, headers=self.spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP
            )
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
    def test_whop_v1_membership(self):
        event = whop_event(
            {
                "type": "membership.went_valid",
                "data": {
                    "id": "mem_1",
                    "metadata": {"telegram_id": "42"},
                    "plan": {"id": "plan_pro"},
                    "renewal_period_end": "2026-11-30T05:00:00.401Z",
                },
            }
        )
        assert (event.action, event.membership_id, event.telegram_id, event.whop_plan_id) == (
            "activate",
            "mem_1",
            42,
            "plan_pro",
        )
        assert event.period_end.isoformat() == "2026-11-30T05:00:00.401000+00:00"

    def test_whop_v2_membership_with_unix_times_and_plan_text(self):
        event = whop_event(
            {
                "action": "membership.went_valid",
                "data": {
                    "id": "mem_2",
                    "plan": "plan_pro",
                    "metadata": {"telegram_id": 42},
                    "renewal_period_end": 1_790_000_000,
                },
            }
        )
        assert event.whop_plan_id == "plan_pro" and event.period_end.timestamp() == 1_790_000_000

    def test_whop_payment_amount_is_exact_cents(self):
        event = whop_event(
            {
                "type": "payment.succeeded",
                "data": {
                    "id": "pay_1",
                    "membership": {"id": "mem_1"},
                    "plan": {"id": "plan_pro"},
                    "total": 6.9,
                    "currency": "usd",
                    "paid_at": "2026-01-01T00:00:00Z",
                },
            }
        )
        assert (event.action, event.payment_id, event.amount_cents, event.currency) == ("payment", "pay_1", 690, "USD")

    def test_whop_refund_created_names_payment_and_membership(self):
        event = whop_event(
            {
                "type": "refund.created",
                "data": {"id": "rf_1", "amount": 29, "payment": {"id": "pay_1", "membership": {"id": "mem_1"}}},
            }
        )
        assert (event.action, event.payment_id, event.membership_id) == ("refund", "pay_1", "mem_1")

    @pytest.mark.parametrize(
        "payload",
        [
            [],
            {"type": "x"},
            {"data": {"id": "m"}},
            {"type": "membership.went_valid", "data": {}},
            {"type": "Membership Went Valid!", "data": {"id": "mem_1"}},
            {"type": "membership.went_valid", "data": {"id": "mem 1; drop"}},
            {"type": "membership.went_valid", "data": {"id": "mem_1", "plan": {"id": ["x"]}}},
            {"type": "membership.went_valid", "data": {"id": "mem_1", "metadata": "telegram_id=1"}},
        ],
    )
    def test_whop_malformed(self, payload):
        with pytest.raises(WebhookPayloadError):
            whop_event(payload)

    @pytest.mark.parametrize(
        "telegram_id", [0, -1, 2**53, 2**52, "0", "-1", "9007199254740992", "1e5", 1.5, True, "٤٢", "42 ", [42]]
    )
    def test_impossible_telegram_ids(self, telegram_id):
        with pytest.raises(WebhookPayloadError, match="telegram_id"):
            whop_event(
                {"type": "membership.went_valid", "data": {"id": "mem_1", "metadata": {"telegram_id": telegram_id}}}
            )

    @pytest.mark.parametrize(
        "moment", [10**20, -1, 1e300, "yesterday", "9999-12-31T00:00:00Z", "1970-01-01T00:00:00Z", "2" * 50, True]
    )
    def test_impossible_times(self, moment):
        with pytest.raises(WebhookPayloadError, match="renewal_period_end"):
            whop_event({"type": "membership.went_valid", "data": {"id": "mem_1", "renewal_period_end": moment}})

    @pytest.mark.parametrize("amount", [-1, "-0.01", 1e12, "NaN", "Infinity", "abc", True, [1]])
    def test_impossible_amounts(self, amount):
        with pytest.raises(WebhookPayloadError, match="amount"):
            whop_event({"type": "payment.succeeded", "data": {"id": "pay_1", "total": amount}})

    @pytest.mark.parametrize(
        "body",
        [
            b'{"a": NaN}',
            b'{"a": Infinity}',
            b'{"a": -Infinity}',
            b'{"a": 1e400}',
            b'{"a": "\\u0000"}',
            b'{"a": "\\ud800"}',
            b'{"\\udc00": 1}',
            b'{"a": ' + b"9" * 30 + b"}",
            b'{"a": ' + b"9" * 5000 + b"}",
            b"[" * 5000,
            b"\xff",
            b'{"a": 1',
        ],
    )
    def test_json_that_cannot_be_stored_as_received(self, body):
        with pytest.raises(WebhookPayloadError):
            json_body(body)

    def test_plain_json_passes(self):
        assert json_body(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}

    @pytest.mark.parametrize(
        "payload",
        [
            [],
            "x",
            [1],
            [{"signature": "short"}],
            [{"signature": "0" * 88}],
            [{"signature": "z" * 88}],  # base58, but 65 bytes
        ],
    )
    def test_helius_malformed(self, payload):
        with pytest.raises(WebhookPayloadError):
            helius_transactions(payload)

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            (("nativeTransfers", 0, "amount"), 1e9),
            (("nativeTransfers", 0, "amount"), -1),
            (("nativeTransfers", 0, "amount"), "1.5"),
            (("nativeTransfers", 0, "toUserAccount"), "nope"),
            (("nativeTransfers",), {"amount": 1}),
            (("accountData", 0, "account"), 7),
            (("timestamp",), 10**15),
            (("instructions", 0, "accounts"), "abc"),
        ],
    )
    def test_helius_impossible_fields(self, path, value):
        transaction = solana_pay_transaction(recipient=MERCHANT_SAMPLE, amount_base_units=10, reference=None)
        target = transaction
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(WebhookPayloadError):
            helius_transactions([transaction])


def signed_post(client, body: bytes, *, msg_id="msg_1", secret=SPEC_SECRET, timestamp=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = standard_webhooks_sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
    return client.post(
        reverse("api:webhook-whop"),
        data=body,
        content_type="application/json",
        headers={"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature},
    )


@pytest.fixture
def whop(settings, client):
    settings.WHOP_WEBHOOK_SECRET = SPEC_SECRET

    def post(payload=None, *, raw=None, **options):
        return signed_post(client, raw if raw is not None else json.dumps(payload).encode(), **options)

    return post


@pytest.fixture
def helius(settings, client):
    settings.HELIUS_AUTH_TOKEN = HELIUS_TOKEN

    def post(payload=None, *, token=HELIUS_TOKEN, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        return client.post(
            reverse("api:webhook-helius"), data=body, content_type="application/json", headers={"authorization": token}
        )

    return post


def went_valid(telegram_id=777, **data):
    return {
        "type": "membership.went_valid",
        "data": {
            "id": "mem_abc",
            "plan": {"id": "plan_pro"},
            "metadata": {"telegram_id": telegram_id},
            "renewal_period_end": int(time.time()) + 30 * 86400,
            **data,
        },
    }


@pytest.mark.django_db
class TestJunkIsRefusedAndCreatesNothing:
    """Signed (so past authentication) but impossible: 400, nothing stored, no user, never 500/503."""

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"\xff\xfe",
            b"[]",
            b'{"type": "membership.activated"}',
            b"[" * 5000,
            b'{"type": "membership.went_valid", "data": {"id": "mem_1", "renewal_period_end": NaN}}',
            b'{"type": "membership.went_valid", "data": {"id": "mem_1", "renewal_period_end": Infinity}}',
            b'{"type": "membership.went_valid", "data": {"id": "mem_1", "renewal_period_end": 1e999}}',
            b'{"type": "membership.went_valid", "data": {"id": "mem_1", "renewal_period_end": 99999999999999999999}}',
            b'{"type": "payment.succeeded", "data": {"id": "pay_1", "total": -Infinity}}',
            b'{"type": "membership.went_valid", "data": {"id": "mem_\\ud800"}}',
            b'{"type": "membership.went_valid", "data": {"id": "mem_1", "note": "a\\u0000b"}}',
        ],
    )
    def test_malformed_signed_body_is_400(self, whop, raw):
        assert whop(raw=raw).status_code == 400
        assert not WebhookEvent.objects.exists()

    @pytest.mark.parametrize("telegram_id", [0, -1, 2**53, "0", "-1", str(2**53)])
    def test_impossible_telegram_ids_are_400_and_create_no_user(self, whop, telegram_id):
        PlanFactory()
        before = TelegramUser.objects.count()
        response = whop(went_valid(telegram_id=telegram_id))
        assert response.status_code == 400 and "telegram_id" in response.json()["detail"]
        assert TelegramUser.objects.count() == before and not WebhookEvent.objects.exists()
        assert not TelegramUser.objects.filter(telegram_id__in=[0, -1, 2**53]).exists()

    @pytest.mark.parametrize(
        "raw",
        [
            b'[{"signature": "x", "timestamp": NaN}]',
            b'[{"signature": "' + b"5" * 88 + b'", "nativeTransfers": [{"amount": -Infinity}]}]',
            b'[{"signature": "\\u0000"}]',
            b"{",
            b"[]",
            b'[{"signature": 1}]',
            b'"text"',
        ],
    )
    def test_helius_junk_is_400(self, helius, raw):
        assert helius(raw=raw).status_code == 400
        assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
class TestWhopEndpoint:
    def test_the_same_event_id_twice_changes_nothing(self, whop, published, django_capture_on_commit_callbacks):
        TelegramUserFactory(telegram_id=777)
        PlanFactory()
        with django_capture_on_commit_callbacks(execute=True):
            assert whop(went_valid(), msg_id="msg_dup").json() == {"status": "accepted"}
        first = Subscription.objects.get(external_id="mem_abc")
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = whop(went_valid(), msg_id="msg_dup")  # retried delivery: fresh signature
        assert response.status_code == 200 and response.json() == {"status": "duplicate"}
        assert callbacks == []  # no second Celery task
        assert Subscription.objects.get(external_id="mem_abc").valid_until == first.valid_until
        event = WebhookEvent.objects.get()
        assert webhook_event_process(event_id=event.pk).status == WebhookEvent.Status.PROCESSED  # a late task: no-op
        assert Subscription.objects.get(external_id="mem_abc").valid_until == first.valid_until

    def test_bad_signature_is_401(self, whop):
        response = whop(went_valid(), secret="whsec_" + "B" * 32)
        assert response.status_code == 401 and not WebhookEvent.objects.exists()

    def test_stale_timestamp_is_401(self, whop):
        assert whop(went_valid(), timestamp=int(time.time()) - 600).status_code == 401

    def test_missing_headers_is_401(self, client, settings):
        settings.WHOP_WEBHOOK_SECRET = SPEC_SECRET
        assert client.post(reverse("api:webhook-whop"), data="{}", content_type="application/json").status_code == 401


@pytest.mark.django_db
class TestHeliusEndpoint:
    @pytest.mark.parametrize("token", ["", "wrong", f"Bearer {HELIUS_TOKEN}x"])
    def test_wrong_authorization_is_401(self, helius, token):
        assert helius([{}], token=token).status_code == 401


@pytest.mark.django_db
class TestNothingStoredIsLost:
    """The view answers once the delivery is stored; a failed enqueue is caught up by the beat sweeper, once."""

    def test_a_failed_enqueue_answers_200_and_the_sweeper_applies_the_event_once(
        self, helius, payment_settings, published, monkeypatch, django_capture_on_commit_callbacks
    ):
        from datetime import timedelta

        from django.utils import timezone

        from accounts import tasks

        pending = solana_payment_request_create(user=TelegramUserFactory(), plan=PlanFactory()).payment
        transaction = solana_pay_transaction(
            recipient=pending.recipient,
            amount_base_units=pending.amount_base_units,
            reference=pending.reference,
            mint=pending.mint,
            decimals=pending.decimals,
            timestamp=timezone.now(),
        )

        def broker_down(**kwargs):
            raise ConnectionError("Error 111 connecting to redis")

        monkeypatch.setattr(tasks.webhook_event_process, "apply_async", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            response = helius([transaction])
        assert response.status_code == 200 and response.json() == {"status": "accepted", "events": 1}
        event = WebhookEvent.objects.get()
        assert event.status == WebhookEvent.Status.RECEIVED
        assert tasks.webhook_events_process_stale.run() == 0  # within the grace left to its own task
        WebhookEvent.objects.update(received_at=timezone.now() - timedelta(minutes=2))
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.webhook_events_process_stale.run() == 1
        assert tasks.webhook_events_process_stale.run() == 0
        pending.refresh_from_db()
        assert pending.status == Payment.Status.PAID
        valid_until = Subscription.objects.get().valid_until
        assert webhook_event_process(event_id=event.pk).status == WebhookEvent.Status.PROCESSED  # a late task: no-op
        assert Subscription.objects.get().valid_until == valid_until
