from django.contrib import admin

from web.models import LoginToken


@admin.register(LoginToken)
class LoginTokenAdmin(admin.ModelAdmin):
    """Only hashes are stored: nothing here can be used to log in."""

    list_display = ("user", "created_at", "expires_at", "used_at")
    readonly_fields = ("user", "token_hash", "created_at", "expires_at", "used_at")
    search_fields = ("user__username", "user__telegram_id")

    def has_add_permission(self, request):
        return False
