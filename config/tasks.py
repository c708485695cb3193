"""Tasks of the infrastructure itself (discovered like every app's tasks module: ``config`` is an installed app)."""

from celery import shared_task

from config.events import outbox_sweep


@shared_task(name="config.tasks.events_outbox_sweep", time_limit=60)
def events_outbox_sweep() -> dict[str, int]:
    """Beat, every 15 s: dispatch the published events whose on-commit dispatch never happened or failed."""
    return outbox_sweep()
