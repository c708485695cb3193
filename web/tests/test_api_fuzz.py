"""Schemathesis over the drf-spectacular OpenAPI schema: generated requests (valid and invalid) to every operation, as
an authenticated user and with the webhook secrets configured, never get a 5xx. Bounded: a few dozen examples per
operation, no shrinking deadline."""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from accounts.login_links import web_user_for
from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from trading.tests.factories import PositionFactory

EXAMPLES_PER_OPERATION = 20

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = WSGIHandler()  # requests go through the whole Django stack in-process (middleware included)


@pytest.fixture
def keep_test_connection():
    """Like Django's test client: a finished request must not close the test transaction's connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def auth_headers(db, settings, keep_test_connection):
    settings.WHOP_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings.HELIUS_AUTH_TOKEN = "helius-fuzz-token"
    user = TelegramUserFactory()
    PositionFactory(user=user)
    SignalFactory()
    token = Token.objects.create(user=web_user_for(telegram_user=user))
    return {"Authorization": f"Token {token.key}"}


@pytest.mark.slow
@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_operation_answers_5xx(case, auth_headers):
    headers = dict(case.headers or {})
    if case.operation.path.startswith("/api/webhooks/"):
        headers.setdefault("Authorization", "helius-fuzz-token")  # get past the Helius check to its body parsing
    else:
        headers.update(auth_headers)
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.operation.label}: {response.status_code} {response.text[:500]}"
