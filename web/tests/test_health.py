import pytest
from django.db import OperationalError
from django.utils import timezone

from analytics.services import heartbeat_record


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok_in_embedded_mode(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] is True
    assert response.json()["broker"] is None


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_is_unreachable(client, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] is False


@pytest.mark.django_db
def test_readyz_is_503_when_the_heartbeat_is_stale(client, settings, redis_url):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = redis_url
    heartbeat_record(at=timezone.now() - timezone.timedelta(hours=1))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["broker"] is True and response.json()["heartbeat_fresh"] is False
    heartbeat_record()
    assert client.get("/readyz").status_code == 200
