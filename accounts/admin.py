from django.contrib import admin, messages

from accounts.admin_confirmation import action_confirmation_page, action_confirmed
from accounts.models import ExchangeCredential, LoginToken, Subscription, TelegramUser, UserPreferences, WebhookEvent


class UserPreferencesInline(admin.StackedInline):
    model = UserPreferences
    can_delete = False
    extra = 0


@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = ("telegram_id", "username", "is_admin", "is_banned", "is_active", "auto_trading_enabled", "joined_at", "last_seen_at")
    list_filter = ("is_admin", "is_banned", "is_active", "auto_trading_enabled", "language")
    search_fields = ("telegram_id", "username", "first_name")
    date_hierarchy = "joined_at"
    inlines = [UserPreferencesInline]
    actions = ("ban_users", "unban_users", "make_admin", "grant_subscription_30_days")

    @admin.action(description="Ban selected users", permissions=["change"])
    def ban_users(self, request, queryset):
        """Destructive: asks for confirmation first; then bans, stops their auto-trading and logs each user."""
        if not action_confirmed(request):
            return action_confirmation_page(
                self, request, queryset, action="ban_users", question=f"Ban {queryset.count()} user(s)?",
                consequence="The bot stops serving them, broadcasts skip them and their auto-trading is switched off.",
            )
        users = list(queryset.filter(is_banned=False))
        TelegramUser.objects.filter(pk__in=[u.pk for u in users]).update(is_banned=True, auto_trading_enabled=False)
        for user in users:
            self.log_change(request, user, "Banned (admin action); auto-trading switched off.")
        self.message_user(request, f"Banned {len(users)} user(s).", messages.SUCCESS)
        return None

    @admin.action(description="Unban selected users", permissions=["change"])
    def unban_users(self, request, queryset):
        users = list(queryset.filter(is_banned=True))
        TelegramUser.objects.filter(pk__in=[u.pk for u in users]).update(is_banned=False)
        for user in users:
            self.log_change(request, user, "Unbanned (admin action).")
        self.message_user(request, f"Unbanned {len(users)} user(s).", messages.SUCCESS)

    @admin.action(description="Make selected users bot admins", permissions=["change"])
    def make_admin(self, request, queryset):
        users = list(queryset.filter(is_admin=False))
        TelegramUser.objects.filter(pk__in=[u.pk for u in users]).update(is_admin=True)
        for user in users:
            self.log_change(request, user, "Made a bot admin (admin action).")
        self.message_user(request, f"{len(users)} user(s) are now admins.", messages.SUCCESS)

    @admin.action(description="Grant or extend a 30-day subscription", permissions=["change"])
    def grant_subscription_30_days(self, request, queryset):
        """Through analytics.services.subscription_grant (the control panel's service), which writes the LogEntry."""
        from analytics.services import subscription_grant

        users = list(queryset)
        for user in users:
            subscription_grant(user=user, days=30, actor=request.user)
        self.message_user(request, f"Granted 30 days to {len(users)} user(s).", messages.SUCCESS)


@admin.register(UserPreferences)
class UserPreferencesAdmin(admin.ModelAdmin):
    list_display = ("user", "paper_mode", "leverage", "position_size_pct", "max_open_positions", "dm_alerts")
    list_filter = ("paper_mode", "dm_alerts", "correlation_filter", "funding_alerts", "default_pnl_period")
    search_fields = ("user__username", "user__telegram_id")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("user", "plan", "status", "source", "amount", "currency", "valid_until", "created_at")
    list_filter = ("status", "source", "plan")
    search_fields = ("user__username", "user__telegram_id", "external_id")
    date_hierarchy = "created_at"


@admin.register(ExchangeCredential)
class ExchangeCredentialAdmin(admin.ModelAdmin):
    """Secrets never appear here: only the exchange and the last four characters of the key."""

    list_display = ("user", "exchange", "last4", "is_active", "validated_at", "created_at")
    list_filter = ("exchange", "is_active")
    search_fields = ("user__username", "user__telegram_id")
    fields = ("user", "exchange", "last4", "is_active", "disabled_reason", "validated_at", "created_at")
    readonly_fields = ("user", "exchange", "last4", "validated_at", "created_at")

    def has_add_permission(self, request):
        return False  # keys are only entered by their owner through /connect


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("provider", "event_id", "event_type", "status", "received_at", "processed_at")
    list_filter = ("provider", "status")
    search_fields = ("event_id", "event_type")
    date_hierarchy = "received_at"
    readonly_fields = ("provider", "event_id", "event_type", "payload", "status", "error", "received_at", "processed_at")

    def has_add_permission(self, request):
        return False


@admin.register(LoginToken)
class LoginTokenAdmin(admin.ModelAdmin):
    """Only hashes are stored: nothing here can be used to log in."""

    list_display = ("user", "created_at", "expires_at", "used_at")
    readonly_fields = ("user", "token_hash", "created_at", "expires_at", "used_at")
    search_fields = ("user__username", "user__telegram_id")

    def has_add_permission(self, request):
        return False
