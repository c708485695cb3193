"""The domain-event outbox (config/events.py): a published event commits with the caller's transaction, is dispatched
and deleted on commit, survives a broker outage or a crash in its row, and the sweeper dispatches what was left."""

import logging
from datetime import timedelta

import kombu.exceptions
import pytest
from django.db import connection, transaction
from django.utils import timezone

from config import events
from config.celery import app
from config.events import outbox_sweep, publish
from config.models import OutboxEvent

CONSUMERS = ("config.tests.outbox_first", "config.tests.outbox_second")


@pytest.fixture
def received(settings):
    """Two recording consumers of ``user.notify`` and one of ``admins.notify``, run eagerly in this process."""
    calls: list[tuple[str, dict]] = []
    tasks = {}
    for name in CONSUMERS:

        def record(_name=name, **payload):
            calls.append((_name, payload))

        tasks[name] = app.task(name=name)(record)
    settings.DOMAIN_EVENT_CONSUMERS = {
        **settings.DOMAIN_EVENT_CONSUMERS,
        "user.notify": list(CONSUMERS),
        "admins.notify": [CONSUMERS[0]],
    }
    settings.CELERY_TASK_ALWAYS_EAGER = True
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield calls
    app.conf.task_always_eager = eager
    for name in tasks:
        app.tasks.pop(name, None)


def _broker_down(monkeypatch):
    def refuse(event, payload):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(events, "dispatch_now", refuse)


def _stored(*, age_seconds: float, **payload) -> OutboxEvent:
    created = timezone.now() - timedelta(seconds=age_seconds)
    return OutboxEvent.objects.create(
        event="user.notify",
        payload={"user_id": 1, "text": "hi", "dedupe_key": "k", **payload},
        created_at=created,
        due_at=created + events.outbox_grace(),
    )


@pytest.mark.django_db
def test_the_event_is_stored_in_the_callers_transaction_and_rolled_back_with_it(
    received, django_capture_on_commit_callbacks
):
    refused = pytest.raises(RuntimeError, match="refused")
    with django_capture_on_commit_callbacks(execute=True) as callbacks, refused, transaction.atomic():
        publish("user.notify", user_id=5, text="opened", dedupe_key="d-5")
        assert list(OutboxEvent.objects.values_list("event", "payload")) == [
            ("user.notify", {"user_id": 5, "text": "opened", "dedupe_key": "d-5"})
        ]
        raise RuntimeError("refused")
    assert OutboxEvent.objects.count() == 0
    assert callbacks == [] and received == []  # nothing announced for a change that never happened


@pytest.mark.django_db
def test_on_commit_the_event_reaches_each_consumer_once_and_its_row_is_deleted(
    received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            publish("user.notify", user_id=5, text="opened", dedupe_key="d-5")
        assert received == []  # not before the commit
        assert OutboxEvent.objects.filter(event="user.notify").count() == 1
    payload = {"user_id": 5, "text": "opened", "dedupe_key": "d-5"}
    assert received == [(CONSUMERS[0], payload), (CONSUMERS[1], payload)]
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_broker_outage_at_commit_keeps_the_row_and_the_caller_gets_no_exception(
    received, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    _broker_down(monkeypatch)
    warnings = caplog.at_level(logging.WARNING, logger="config.events")
    with warnings, django_capture_on_commit_callbacks(execute=True) as callbacks:
        publish("user.notify", user_id=5, text="closed", dedupe_key="d-6")
    assert len(callbacks) == 1  # it ran, and did not raise
    row = OutboxEvent.objects.get()
    assert row.payload == {"user_id": 5, "text": "closed", "dedupe_key": "d-6"}
    assert row.last_error.startswith("OperationalError: Error 111")
    assert row.due_at > timezone.now()  # left to the on-commit dispatch during the grace period
    assert any("stored but not dispatched" in r.getMessage() for r in caplog.records)
    assert received == []


@pytest.mark.django_db
def test_the_sweeper_dispatches_an_old_row_once_per_consumer_and_leaves_young_rows_alone(received):
    old = _stored(age_seconds=45, user_id=1)
    young = _stored(age_seconds=5, user_id=2)
    assert outbox_sweep() == {"due": 1, "dispatched": 1, "failed": 0}
    payload = {"user_id": 1, "text": "hi", "dedupe_key": "k"}
    assert received == [(CONSUMERS[0], payload), (CONSUMERS[1], payload)]
    assert not OutboxEvent.objects.filter(pk=old.pk).exists()
    assert outbox_sweep() == {"due": 0, "dispatched": 0, "failed": 0}  # nothing twice
    assert len(received) == 2
    assert OutboxEvent.objects.get().pk == young.pk


@pytest.mark.django_db
def test_the_sweeper_takes_the_oldest_first_in_bounded_batches(received, settings):
    settings.EVENT_OUTBOX_BATCH_SIZE = 2
    for user_id, age in ((3, 40), (1, 90), (2, 60)):
        _stored(age_seconds=age, user_id=user_id)
    assert outbox_sweep()["dispatched"] == 2
    assert [payload["user_id"] for name, payload in received if name == CONSUMERS[0]] == [1, 2]
    assert list(OutboxEvent.objects.values_list("payload__user_id", flat=True)) == [3]


@pytest.mark.django_db
def test_a_failed_sweep_counts_the_attempt_and_backs_off_then_a_later_sweep_delivers(received, monkeypatch):
    row = _stored(age_seconds=45)
    with monkeypatch.context() as patch:
        _broker_down(patch)
        assert outbox_sweep() == {"due": 1, "dispatched": 0, "failed": 1}
    row.refresh_from_db()
    assert row.attempts == 1 and "Connection refused" in row.last_error
    assert row.due_at >= timezone.now() + timedelta(seconds=40)  # waited 45 s: waits as long again (cap 60 s)
    assert outbox_sweep()["due"] == 0 and received == []  # not before its next due time
    OutboxEvent.objects.filter(pk=row.pk).update(due_at=timezone.now())
    assert outbox_sweep() == {"due": 1, "dispatched": 1, "failed": 0}
    assert [name for name, _ in received] == list(CONSUMERS)
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_broker_outage_stops_the_sweep_at_its_first_failure(received, monkeypatch):
    _broker_down(monkeypatch)
    for age in (50, 40, 35):
        _stored(age_seconds=age)
    assert outbox_sweep() == {"due": 3, "dispatched": 0, "failed": 1}
    assert sorted(OutboxEvent.objects.values_list("attempts", flat=True)) == [1, 1, 1]  # claimed, back off together
    assert OutboxEvent.objects.exclude(last_error="").count() == 1


@pytest.mark.django_db
def test_a_row_that_keeps_failing_or_names_no_event_does_not_block_the_others(received, monkeypatch, caplog):
    poisoned = _stored(age_seconds=90, user_id=666)
    gone = OutboxEvent.objects.create(event="position.teleported", payload={"position_id": 1}, due_at=timezone.now())
    _stored(age_seconds=40, user_id=7)
    real_dispatch = events.dispatch_now

    def dispatch(event, payload):
        if payload.get("user_id") == 666:
            raise TypeError("a consumer's bug")
        return real_dispatch(event, payload)

    monkeypatch.setattr(events, "dispatch_now", dispatch)
    with caplog.at_level(logging.ERROR, logger="config.events"):
        assert outbox_sweep() == {"due": 3, "dispatched": 1, "failed": 2}
    assert [payload["user_id"] for name, payload in received if name == CONSUMERS[0]] == [7]
    assert list(OutboxEvent.objects.values_list("pk", "attempts")) == [(poisoned.pk, 1)]  # kept for a later sweep
    assert not OutboxEvent.objects.filter(pk=gone.pk).exists()
    assert any("unknown event position.teleported dropped" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_the_sweep_task_is_on_the_beat_and_dispatches(received, settings):
    entry = settings.CELERY_BEAT_SCHEDULE["events-outbox-sweep"]
    assert entry["task"] == "config.tasks.events_outbox_sweep"
    assert entry["schedule"] < settings.EVENT_OUTBOX_GRACE_SECONDS and entry["options"]["expires"] < entry["schedule"]
    events.task_modules_load()
    _stored(age_seconds=31)
    assert app.tasks[entry["task"]].apply().get() == {"due": 1, "dispatched": 1, "failed": 0}
    assert len(received) == 2


@pytest.mark.django_db
def test_an_error_alert_goes_out_when_the_outbox_table_cannot_be_written(
    received, monkeypatch, caplog, settings, django_capture_on_commit_callbacks
):
    """The error hook's alert, while the database is what fails: the insert fails, the caller's transaction stays
    usable (savepoint), and the alert is dispatched on commit without a row."""
    from django.core.cache import cache

    from config.observability import error_report

    monkeypatch.setattr(OutboxEvent._meta, "db_table", "events_outbox_missing")
    settings.ERROR_ALERT_THRESHOLD = 1
    cache.clear()
    try:
        warnings = caplog.at_level(logging.WARNING, logger="config.events")
        with warnings, django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            error_report(ValueError("db is down"), kind="other")
            assert received == []  # on commit, like any event
            with connection.cursor() as cursor:  # the caller's transaction is still usable
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
    finally:
        cache.clear()
    assert [(name, payload["dedupe_key"].split(":")[:2]) for name, payload in received] == [
        (CONSUMERS[0], ["error-alert", "other"])
    ]
    assert "1 other errors" in received[0][1]["text"]
    assert any("could not be stored in the outbox" in r.getMessage() for r in caplog.records)


def test_an_error_alert_goes_out_with_no_database_at_all(received, settings):
    """No database access at all (pytest-django refuses it, as an unreachable server would): dispatched at once."""
    from config.observability import _alert_admins

    _alert_admins(kind="task", count=7, reference="ABCD1234", exc=ValueError("x"))
    assert [name for name, _ in received] == [CONSUMERS[0]]
    assert "7 task errors" in received[0][1]["text"] and "ABCD1234" in received[0][1]["text"]


def test_a_failed_dispatch_without_a_row_is_logged_not_raised(received, monkeypatch, caplog):
    _broker_down(monkeypatch)
    from config.observability import _alert_admins

    with caplog.at_level(logging.WARNING, logger="config.events"):
        _alert_admins(kind="task", count=7, reference="ABCD1234", exc=ValueError("x"))
    assert received == []
    assert any("was not dispatched" in r.getMessage() for r in caplog.records)


def test_two_sweepers_never_take_the_same_row(postgres_database, received):
    """PostgreSQL: rows another sweeper holds (locked while it claims them) are skipped, not waited for or taken."""
    import threading

    rows = [_stored(age_seconds=60 - i, user_id=i) for i in range(4)]
    locked, release = threading.Event(), threading.Event()

    def other_sweeper():
        try:
            with transaction.atomic():
                list(OutboxEvent.objects.select_for_update().filter(pk__in=[rows[0].pk, rows[1].pk]))
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_sweeper)
    thread.start()
    try:
        assert locked.wait(10)
        assert outbox_sweep() == {"due": 2, "dispatched": 2, "failed": 0}
    finally:
        release.set()
        thread.join(10)
    assert sorted(payload["user_id"] for name, payload in received if name == CONSUMERS[0]) == [2, 3]
    assert sorted(OutboxEvent.objects.values_list("payload__user_id", flat=True)) == [0, 1]
