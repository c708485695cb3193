"""User activity (DAU/WAU/MAU), backtest runs and heartbeats."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class UserActivity(models.Model):
    class Kind(models.TextChoices):
        COMMAND = "command"
        CALLBACK = "callback"
        DASHBOARD = "dashboard"
        API = "api"

    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=64, blank=True, help_text="Command or page name")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "user activities"
        indexes = [models.Index(fields=["created_at", "user"], name="activity_created_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} {self.kind} {self.name} @ {self.created_at:%Y-%m-%d %H:%M}"


class BacktestRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_by_telegram_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    params = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    equity_curve = models.FileField(upload_to="backtests/", blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"backtest #{self.pk} ({self.status})"


class Heartbeat(models.Model):
    """The last time a periodic process proved it is alive (beat → worker → database)."""

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class AnalyticsSnapshot(models.Model):
    """The platform's analytics for one UTC day, frozen by the daily task (``analytics.tasks.analytics_snapshot``)."""

    day = models.DateField(unique=True)
    data = models.JSONField(default=dict, help_text="analytics.selectors.analytics_overview() at snapshot time")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"analytics snapshot {self.day:%Y-%m-%d}"


class SystemSetting(models.Model):
    """Operator switches that outlive a restart, e.g. ``auto_trading_paused`` (read by trading through a selector)."""

    AUTO_TRADING_PAUSED = "auto_trading_paused"

    key = models.CharField(max_length=64, unique=True)
    value = models.JSONField(default=None, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}"
