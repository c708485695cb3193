"""Hostile input gets a 400 with a clear JSON error and nothing else: signed payment webhooks (Whop, Helius) and the
REST API, with NaN, infinities, huge numbers, huge and negative timestamps, lone surrogates, NUL characters and
non-object JSON. A 500 or 503 would make the provider retry forever. Run against PostgreSQL too (DATABASE_URL): it is
the database that refuses NUL characters and surrogates."""

import json
import time

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.login_links import web_user_for
from accounts.models import WebhookEvent
from accounts.payment_webhooks import standard_webhooks_sign
from accounts.tests.factories import TelegramUserFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HELIUS_TOKEN = "helius-hostile-token"
SIGNATURE = "5" * 88

# JSON texts (not Python values): what a hostile sender can put where a field is expected.
HOSTILE_JSON = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1" * 400,
    "-" + "9" * 60,
    "1e308",
    "-1",
    "99999999999999999999",
    "253402300800",
    "-62135596801",
    '"\\ud800"',
    '"\\udfff x"',
    '"a\\u0000b"',
    '"1e1000000"',
    '"NaN"',
    '"-Infinity"',
    '"9999-99-99"',
    '"\\u0000"',
    "[]",
    "{}",
    "true",
    "null",
    '"' + "x" * 5000 + '"',
    "[" * 64 + "]" * 64,
]
# Values that are merely unusual for some fields (absent, a negative amount counted as 0, a large but valid id or
# amount): acknowledged or refused, depending on the field. Every other value above must be refused.
UNUSUAL_JSON = {"null", "[]", "{}", "-1", "253402300800", "-62135596801"}


@pytest.fixture
def webhooks(settings, client):
    settings.WHOP_WEBHOOK_SECRET = SECRET
    settings.HELIUS_AUTH_TOKEN = HELIUS_TOKEN

    def whop(body: bytes, *, msg_id: str = "msg_hostile"):
        timestamp = int(time.time())
        signature = standard_webhooks_sign(secret=SECRET, msg_id=msg_id, timestamp=timestamp, body=body)
        return client.post(
            reverse("api:webhook-whop"),
            data=body,
            content_type="application/json",
            headers={"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature},
        )

    def helius(body: bytes):
        return client.post(
            reverse("api:webhook-helius"),
            data=body,
            content_type="application/json",
            headers={"authorization": HELIUS_TOKEN},
        )

    return whop, helius


def _whop_body(field: str, value_json: str) -> bytes:
    data = {
        "id": "mem_hostile",
        "plan_id": "plan_pro",
        "final_amount": "29.99",
        "metadata": {"telegram_id": "42"},
        "renewal_period_end": 1_790_000_000,
    }
    text = json.dumps({"type": "membership.activated", "data": data})
    if field == "telegram_id":
        return text.replace('"telegram_id": "42"', f'"telegram_id": {value_json}').encode()
    return text.replace(f'"{field}": ' + json.dumps(data[field]), f'"{field}": {value_json}').encode()


def _helius_body(field: str, value_json: str) -> bytes:
    transaction = {
        "signature": SIGNATURE,
        "type": "TRANSFER",
        "timestamp": 1_790_000_000,
        "tokenTransfers": [{"tokenAmount": 25}],
        "nativeTransfers": [{"amount": 1000}],
    }
    text = json.dumps([transaction])
    old = {
        "timestamp": '"timestamp": 1790000000',
        "tokenAmount": '"tokenAmount": 25',
        "amount": '"amount": 1000',
        "signature": f'"signature": "{SIGNATURE}"',
    }[field]
    return text.replace(old, old.split(": ")[0] + ": " + value_json).encode()


def _assert_clear_400(response):
    assert response.status_code == 400, (response.status_code, response.content[:300])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail


@pytest.mark.parametrize("value", HOSTILE_JSON)
@pytest.mark.parametrize("field", ["final_amount", "renewal_period_end", "telegram_id"])
def test_whop_hostile_field_is_a_clear_400(webhooks, field, value):
    whop, _ = webhooks
    response = whop(_whop_body(field, value))
    if response.status_code == 200:
        assert value in UNUSUAL_JSON, value
        return
    _assert_clear_400(response)
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("value", HOSTILE_JSON)
@pytest.mark.parametrize("field", ["timestamp", "tokenAmount", "amount", "signature"])
def test_helius_hostile_field_is_a_clear_400(webhooks, field, value):
    _, helius = webhooks
    response = helius(_helius_body(field, value))
    if response.status_code == 200:  # Helius' float tokenAmount is informative only (the raw amount is used)
        assert value in UNUSUAL_JSON | ({"1e308"} if field == "tokenAmount" else set()) and field != "signature", value
        return
    _assert_clear_400(response)
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b"[NaN]",
        b'"\\ud800"',
        b'{"type": "a\\u0000", "data": {}}',
        b"1e400",
        b"42",
        b"null",
        b'"string"',
        b"[]",
        b"\xff\xfe\x00",
        b"",
        b"[" * 100_000,
    ],
)
def test_non_object_or_hostile_json_body_is_a_clear_400(webhooks, body):
    whop, helius = webhooks
    _assert_clear_400(whop(body))
    _assert_clear_400(helius(body))
    assert not WebhookEvent.objects.exists()


def test_a_hostile_webhook_id_header_is_refused_not_stored(webhooks, client):
    whop, _ = webhooks
    body = _whop_body("final_amount", '"1"')
    for msg_id in ("x" * 201, "msg\u00e9", "msg\x7f"):
        assert whop(body, msg_id=msg_id).status_code in (400, 401)
    assert not WebhookEvent.objects.exists()


def test_an_oversized_body_is_a_clear_400(webhooks, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    whop, helius = webhooks
    body = json.dumps([{"signature": SIGNATURE, "pad": "x" * 2000}]).encode()
    _assert_clear_400(helius(body))
    _assert_clear_400(whop(body))


# ---- fuzz -----------------------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["1e1000000", "NaN", "-Infinity", "\x00", "9" * 400, "2100-01-01T00:00:00Z", "0000"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
raw_tokens = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '"\\u0000"', "1" * 80])


def _whop_payload(data: dict) -> dict:
    return {"type": "membership.activated", "data": {"id": "mem_fuzz", **data}}


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "final_amount",
                "amount",
                "total",
                "renewal_period_end",
                "expires_at",
                "metadata",
                "plan_id",
                "currency",
                "membership",
                "id",
            ]
        ),
        json_values,
        max_size=5,
    ),
    transaction=st.dictionaries(
        st.sampled_from(
            ["timestamp", "tokenTransfers", "nativeTransfers", "type", "accountData", "transaction", "signature"]
        ),
        json_values,
        max_size=5,
    ),
    token=raw_tokens,
    where=st.integers(min_value=0, max_value=2),
)
def test_fuzzed_webhooks_never_answer_5xx(webhooks, fields, transaction, token, where):
    whop, helius = webhooks
    whop_text = json.dumps(_whop_payload(fields))
    helius_text = json.dumps([{"signature": SIGNATURE, **transaction}])
    if where == 1:  # splice a raw hostile JSON token in place of the first number or string value
        whop_text = whop_text.replace('"mem_fuzz"', token, 1)
        helius_text = helius_text.replace(f'"{SIGNATURE}"', f'"{SIGNATURE}", "x": {token}', 1)
    for response in (whop(whop_text.encode()), helius(helius_text.encode())):
        assert response.status_code < 500, (response.status_code, response.content[:300])
        assert response.status_code in (200, 400) and isinstance(response.json(), dict)


@pytest.mark.slow
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                "leverage",
                "max_open_positions",
                "position_size_pct",
                "risk_per_trade_pct",
                "muted_symbols",
                "accepted_risk_levels",
                "dm_alerts",
                "default_pnl_period",
                "sizing_mode",
                "unknown",
            ]
        ),
        json_values,
        max_size=4,
    ),
    token=raw_tokens,
    splice=st.booleans(),
    query=st.dictionaries(st.sampled_from(["limit", "source", "status", "period"]), st.text(max_size=20), max_size=3),
)
def test_fuzzed_api_requests_never_answer_5xx(db, changes, token, splice, query):
    user = TelegramUserFactory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=web_user_for(telegram_user=user)).key}")
    body = json.dumps(changes)
    if splice:
        body = body.replace("{", '{"leverage": ' + token + ", ", 1) if body != "{}" else '{"leverage": ' + token + "}"
    response = client.generic("PATCH", reverse("api:preferences"), body.encode(), content_type="application/json")
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])
    for name in ("signals", "positions", "pnl"):
        response = client.get(reverse(f"api:{name}"), query)
        assert response.status_code in (200, 400), (name, response.status_code, response.content[:300])
