"""Thin Celery tasks of the accounts app: payment deliveries, the subscriptions' lifecycle, admin alerts."""

from celery import shared_task

from accounts import payments, services, subscriptions


@shared_task(name="accounts.tasks.webhook_event_process", time_limit=60)
def webhook_event_process(*, event_id: int) -> str:
    return payments.webhook_event_process(event_id=event_id).status


@shared_task(
    name="accounts.tasks.webhook_events_process_stale", time_limit=300, soft_time_limit=280, ignore_result=True
)
def webhook_events_process_stale() -> int:
    """Every minute (beat): payment deliveries stored but never processed (enqueue failed, worker died)."""
    return payments.webhook_events_process_stale()


@shared_task(name="accounts.tasks.admins_notify", time_limit=60, ignore_result=True)
def admins_notify(*, text: str, dedupe_key: str) -> int:
    """Consumer of ``admins.notify`` (e.g. repeated errors reported by config.observability)."""
    return services.admins_notify(text=text, dedupe_key=dedupe_key)


@shared_task(name="accounts.tasks.subscriptions_lifecycle", time_limit=300, soft_time_limit=280, ignore_result=True)
def subscriptions_lifecycle() -> dict[str, int]:
    """Every 10 minutes (beat): reminders before a plan ends, downgrade at its end, unpaid requests expire."""
    return subscriptions.subscriptions_lifecycle()
