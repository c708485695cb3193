from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from analytics.models import (
    AnalyticsSnapshot,
    BacktestRun,
    Heartbeat,
    SystemSetting,
    UserActivity,
)


@admin.register(UserActivity)
class UserActivityAdmin(admin.ModelAdmin):
    list_display = ("user", "kind", "name", "created_at")
    list_filter = ("kind",)
    search_fields = ("user__username", "user__telegram_id", "name")
    date_hierarchy = "created_at"


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "symbols",
        "created_by",
        "requested_by_telegram_id",
        "created_at",
        "finished_at",
        "report",
    )
    list_filter = ("status",)
    readonly_fields = ("metrics", "error", "started_at", "finished_at", "equity_preview")

    @admin.display(description="symbols")
    def symbols(self, obj):
        return ", ".join(obj.params.get("symbols", []))[:80]

    @admin.display(description="report")
    def report(self, obj):
        return format_html('<a href="{}">open</a>', reverse("control:backtest-detail", args=[obj.pk]))

    @admin.display(description="equity chart")
    def equity_preview(self, obj):
        if not obj.equity_curve:
            return "–"
        return format_html('<img src="{}" style="max-width:100%">', reverse("control:backtest-png", args=[obj.pk]))


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "beat_at")


@admin.register(AnalyticsSnapshot)
class AnalyticsSnapshotAdmin(admin.ModelAdmin):
    list_display = ("day", "created_at", "updated_at")
    readonly_fields = ("day", "data", "created_at", "updated_at")
    date_hierarchy = "day"


@admin.register(SystemSetting)
class SystemSettingAdmin(admin.ModelAdmin):
    """Read-only here: the control panel changes switches (with confirmation and an admin-log entry)."""

    list_display = ("key", "value", "updated_at")
    readonly_fields = ("key", "value", "updated_at")

    def has_add_permission(self, request):
        return False
