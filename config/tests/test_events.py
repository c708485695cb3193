import pytest

from config.events import dispatch_now, publish


def test_unknown_event_is_refused():
    with pytest.raises(ValueError, match="Unknown domain event"):
        publish("signal.exploded", signal_id=1)


@pytest.mark.django_db
def test_event_reaches_each_consumer_after_commit(settings, monkeypatch):
    calls = []
    from config.celery import app

    @app.task(name="config.tests.record_event")
    def record_event(**payload):
        calls.append(payload)

    settings.DOMAIN_EVENT_CONSUMERS = {
        **settings.DOMAIN_EVENT_CONSUMERS,
        "signal.created": ["config.tests.record_event"],
    }
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    assert dispatch_now("signal.created", {"signal_id": 7}) == ["config.tests.record_event"]
    assert calls == [{"signal_id": 7}]
