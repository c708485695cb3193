import logging

import pytest

from accounts.services import admins_notify
from accounts.tests.factories import TelegramUserFactory
from config.observability import error_counts, error_report


@pytest.fixture
def clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def test_request_id_is_echoed_and_generated(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 16


@pytest.mark.urls("config.tests.urls_boom")
@pytest.mark.django_db
def test_unhandled_view_error_gets_a_friendly_page_with_reference(client, caplog, clear_cache):
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="perps.errors"):
        response = client.get("/boom", HTTP_X_REQUEST_ID="req-1")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong" in page and "kaboom" not in page
    record = next(r for r in caplog.records if r.name == "perps.errors")
    assert record.error_reference in page
    assert record.request_id == "req-1"
    assert record.exc_info is not None  # operators get the full trace
    assert error_counts()["view"] == 1


@pytest.mark.urls("config.tests.urls_boom")
@pytest.mark.django_db
def test_api_errors_answer_json(client, clear_cache):
    client.raise_request_exception = False
    response = client.get("/api/boom")
    assert response.status_code == 500
    assert set(response.json()) == {"error", "reference"}


@pytest.mark.django_db
def test_repeated_errors_alert_admins_once_per_interval(settings, monkeypatch, clear_cache):
    admin = TelegramUserFactory(is_admin=True)
    TelegramUserFactory(is_admin=False)
    sent = []
    monkeypatch.setattr("config.observability.publish", lambda event, **payload: sent.append((event, payload)))
    monkeypatch.setattr("accounts.services.publish", lambda event, **payload: sent.append((event, payload)))
    settings.ERROR_ALERT_THRESHOLD = 3
    for _ in range(6):
        error_report(ValueError("x"), kind="task")
    assert error_counts()["task"] == 6
    assert [event for event, _ in sent] == ["admins.notify"]
    assert "6 task errors" not in sent[0][1]["text"] and "3 task errors" in sent[0][1]["text"]
    assert admins_notify(**sent[0][1]) == 1  # the consumer: one user.notify per admin
    assert sent[1][0] == "user.notify" and sent[1][1]["user_id"] == admin.pk


@pytest.mark.urls("config.tests.urls_boom")
@pytest.mark.django_db
def test_not_found_and_forbidden_are_answered_by_django_not_counted_as_errors(client, clear_cache):
    client.raise_request_exception = False
    assert client.get("/missing").status_code == 404
    assert client.get("/forbidden").status_code == 403
    assert error_counts().get("view", 0) == 0
