"""Outgoing deliveries (idempotent per chat and dedupe key) and incoming update de-duplication.

Nothing here ever holds an API key: the /connect conversation keeps its partial input encrypted in the cache only.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Delivery(models.Model):
    """One outgoing message to one chat. ``(chat_id, dedupe_key)`` is unique, so announcing again is a no-op."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Claimed by a worker"
        SENT = "sent", "Sent"
        BLOCKED = "blocked", "Bot blocked by the user (403)"
        FAILED = "failed", "Failed permanently"

    chat_id = models.CharField(max_length=64, help_text="Telegram chat id, or @channelusername")
    dedupe_key = models.CharField(max_length=200)
    user = models.ForeignKey(
        "accounts.TelegramUser", null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    text = models.TextField(help_text="HTML; user-supplied parts are already escaped")
    reply_markup = models.JSONField(null=True, blank=True)
    reply_to_message_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Claimed (or the claim renewed) by a sender")
    message_id = models.BigIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(null=True, blank=True, help_text="Still pending after this: the sweeper sends it")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["chat_id", "dedupe_key"], name="one_delivery_per_chat_key")]
        indexes = [
            models.Index(fields=["status", "created_at"], name="delivery_status_created_idx"),
            models.Index(fields=["dedupe_key", "status"], name="delivery_key_status_idx"),
            models.Index(fields=["due_at"], condition=models.Q(status="pending"), name="delivery_pending_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.dedupe_key} → {self.chat_id} ({self.status})"


class TelegramUpdate(models.Model):
    """One incoming update, stored once (Telegram re-delivers after a timeout or a non-2xx answer).

    The webhook stores the raw update here (``payload``: Fernet-encrypted, since a /connect reply carries API keys)
    and answers at once; ``telegram_bridge.tasks.telegram_update_process`` handles it exactly once and empties the
    payload. A row still unprocessed a minute later (enqueue failed, worker died) is picked up by the beat sweeper
    ``telegram_updates_process_stale``. Long polling handles in-process and stores the id only (processed at once).
    """

    update_id = models.BigIntegerField(unique=True)
    kind = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    payload = models.TextField(blank=True, help_text="The raw update as Fernet-encrypted JSON until it is processed")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="A worker is handling it (lease)")
    attempts = models.PositiveSmallIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["received_at"], condition=models.Q(processed_at__isnull=True), name="tg_update_unprocessed_idx"
            )
        ]

    def __str__(self) -> str:
        return f"update {self.update_id} ({self.kind})"
