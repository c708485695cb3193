"""The domain-event outbox (config/events.py): an event published inside a transaction is stored in that transaction,
so it commits (or rolls back) with the state change it announces, and stays here until it has been dispatched."""

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """One published domain event not yet handed to its consumers' tasks. The row is deleted once dispatched."""

    event = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    # The sweeper dispatches the row from this time on: a grace period after the publish (the on-commit dispatch goes
    # first), then pushed back after each failed attempt (and while a sweeper holds it).
    due_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "events_outbox"
        indexes = [models.Index(fields=["due_at"], name="events_outbox_due_at")]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} (attempts {self.attempts})"
