"""The REST API: OpenAPI schema and docs, token auth, the user's own signals/positions/PnL/preferences."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.login_links import web_user_for
from accounts.models import UserPreferences
from accounts.tests.factories import TelegramUserFactory
from analytics.models import UserActivity
from signals.models import Signal
from signals.tests.factories import SignalFactory
from trading.models import Position
from trading.tests.factories import PositionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_user():
    user = TelegramUserFactory()
    token = Token.objects.create(user=web_user_for(telegram_user=user))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client, user


def test_schema_and_docs_are_public(client):
    schema = client.get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/signals/",
        "/api/v1/positions/",
        "/api/v1/pnl/",
        "/api/v1/preferences/",
        "/api/webhooks/whop/",
        "/api/webhooks/helius/",
    ):
        assert path in paths
    assert "patch" in paths["/api/v1/preferences/"]
    assert client.get(reverse("api:docs")).status_code == 200


@pytest.mark.parametrize("name", ["signals", "positions", "pnl", "preferences"])
def test_anonymous_and_bad_tokens_are_refused(name):
    client = APIClient()
    assert client.get(reverse(f"api:{name}")).status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get(reverse(f"api:{name}")).status_code == 401


def test_an_account_without_telegram_user_is_forbidden(django_user_model):
    token = Token.objects.create(user=django_user_model.objects.create_user("staffer"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(reverse("api:signals")).status_code == 403


def test_banned_user_is_forbidden(api_user):
    client, user = api_user
    user.is_banned = True
    user.save()
    assert client.get(reverse("api:signals")).status_code == 403


def test_signals_with_outcomes_and_filters(api_user):
    client, user = api_user
    SignalFactory(status=Signal.Status.CLOSED, outcome="tp1", outcome_pnl_pct=Decimal("1.5"), closed_at=timezone.now())
    SignalFactory(source=Signal.Source.NEWS, headline="ETF approved")
    body = client.get(reverse("api:signals")).json()
    assert len(body) == 2 and {s["outcome"] for s in body} == {"tp1", "open"}
    news = client.get(reverse("api:signals"), {"source": "news", "limit": 5}).json()
    assert [s["headline"] for s in news] == ["ETF approved"]
    assert client.get(reverse("api:signals"), {"limit": 0}).status_code == 400
    assert UserActivity.objects.filter(user=user, kind="api", name="api:signals").count() == 3


def test_positions_are_the_users_own(api_user):
    client, user = api_user
    mine = PositionFactory(user=user)
    closed = PositionFactory(
        user=user,
        signal=SignalFactory(status=Signal.Status.CLOSED),
        status=Position.Status.CLOSED,
        realised_pnl=Decimal("10"),
        fees=Decimal("1"),
        closed_at=timezone.now(),
    )
    PositionFactory()  # another user's
    open_rows = client.get(reverse("api:positions")).json()
    assert [row["id"] for row in open_rows] == [mine.pk]
    closed_rows = client.get(reverse("api:positions"), {"status": "closed"}).json()
    assert [row["id"] for row in closed_rows] == [closed.pk]
    assert Decimal(closed_rows[0]["net_pnl"]) == Decimal("9")


def test_pnl(api_user):
    client, _ = api_user
    body = client.get(reverse("api:pnl"), {"period": "week"}).json()
    assert body["period"] == "week" and body["available"] is True
    assert body["summary"]["trades"] == 0
    assert client.get(reverse("api:pnl"), {"period": "century"}).status_code == 400


def test_preferences_read_and_update_with_the_shared_validator(api_user, settings):
    client, user = api_user
    assert client.get(reverse("api:preferences")).json()["leverage"] == UserPreferences.objects.get(user=user).leverage
    response = client.patch(reverse("api:preferences"), {"leverage": 4, "accepted_risk_levels": ["low"]}, format="json")
    assert response.status_code == 200 and response.json()["leverage"] == 4
    assert UserPreferences.objects.get(user=user).accepted_risk_levels == ["low"]

    refused = client.patch(reverse("api:preferences"), {"leverage": settings.MAX_LEVERAGE + 1}, format="json")
    assert refused.status_code == 400 and "leverage" in refused.json()["detail"]
    assert UserPreferences.objects.get(user=user).leverage == 4
    assert client.patch(reverse("api:preferences"), {"sizing_mode": "yolo"}, format="json").status_code == 400
    assert client.patch(reverse("api:preferences"), "[1,", content_type="application/json").status_code == 400


@pytest.mark.parametrize("value", [1e308, -1e308, "1e1000000", "NaN", "Infinity", 10**40, "9" * 5000, True, [], {}])
def test_a_hostile_preference_number_is_a_400_with_the_allowed_range(api_user, settings, value):
    client, user = api_user
    settings.MAX_LEVERAGE = 20
    response = client.patch(reverse("api:preferences"), {"leverage": value, "risk_per_trade_pct": value}, format="json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["leverage"] == [
        "Leverage must be a whole number from 1x to 20x."
    ]  # the bot and the form say the same
    assert detail["risk_per_trade_pct"] == ["Risk per trade must be a number from 0.05% to 10%."]
    assert UserPreferences.objects.get(user=user).leverage == 5


@pytest.mark.parametrize(
    "body",
    [
        b'{"leverage": NaN}',
        b'{"leverage": -Infinity}',
        b"[1, 2]",
        b'"text"',
        b"{",
        b'{"muted_symbols": ["\\ud800"]}',
        b'{"muted_symbols": ["A\\u0000"]}',
        b"\xff",
    ],
)
def test_malformed_or_hostile_json_is_a_400(api_user, body):
    client, user = api_user
    response = client.generic("PATCH", reverse("api:preferences"), body, content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    assert UserPreferences.objects.get(user=user).muted_symbols == []


def test_decimals_are_plain_strings_at_the_markets_precision(api_user):
    from signals.tests.factories import SymbolFactory

    client, user = api_user
    symbol = SymbolFactory(symbol="PEPE/USDT:USDT", tick_size=Decimal("0.00000001"), step_size=Decimal("1000"))
    signal = SignalFactory(
        symbol=symbol,
        entry=Decimal("0.00001234"),
        stop=Decimal("0.0000120"),
        tp1=Decimal("0.0000130"),
        tp2=Decimal("0.0000140"),
    )
    PositionFactory(
        user=user,
        signal=signal,
        symbol=symbol,
        quantity=Decimal("1000000"),
        remaining_quantity=Decimal("1000000"),
        entry_price=Decimal("0.00001234"),
        stop_price=Decimal("0.0000120"),
        realised_pnl=Decimal("0"),
        fees=Decimal("0"),
    )
    [row] = client.get(reverse("api:positions")).json()
    assert (row["entry_price"], row["stop_price"], row["quantity"]) == ("0.00001234", "0.00001200", "1000000")
    assert (row["realised_pnl"], row["fees"]) == ("0.00000000", "0.00000000")
    [card] = client.get(reverse("api:signals")).json()
    assert (card["entry"], card["tp2"]) == ("0.00001234", "0.00001400")
    summary = client.get(reverse("api:pnl"), {"period": "all"}).json()["summary"]
    text = str(summary)
    assert "E-" not in text and "E+" not in text  # never "0E-8"
    assert summary["realised"] == "0.00000000" and summary["net"] == "0.00000000"
