"""The domain-event outbox in the Django admin: what is waiting to be dispatched, and why (read-only)."""

from django.contrib import admin

from config.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "event", "attempts", "due_at", "last_error")
    list_filter = ("event",)
    readonly_fields = ("event", "payload", "created_at", "due_at", "attempts", "last_error")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
