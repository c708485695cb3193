from datetime import timedelta

from django.contrib import admin, messages
from django.utils import timezone

from accounts.models import ExchangeCredential, Subscription, TelegramUser, UserPreferences


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
        updated = queryset.update(is_banned=True, auto_trading_enabled=False)
        self.message_user(request, f"Banned {updated} user(s).", messages.SUCCESS)

    @admin.action(description="Unban selected users", permissions=["change"])
    def unban_users(self, request, queryset):
        updated = queryset.update(is_banned=False)
        self.message_user(request, f"Unbanned {updated} user(s).", messages.SUCCESS)

    @admin.action(description="Make selected users bot admins", permissions=["change"])
    def make_admin(self, request, queryset):
        updated = queryset.update(is_admin=True)
        self.message_user(request, f"{updated} user(s) are now admins.", messages.SUCCESS)

    @admin.action(description="Grant or extend a 30-day subscription", permissions=["change"])
    def grant_subscription_30_days(self, request, queryset):
        now = timezone.now()
        for user in queryset:
            current = user.subscriptions.filter(status=Subscription.Status.ACTIVE).order_by("-valid_until").first()
            if current is not None:
                current.valid_until = max(current.valid_until or now, now) + timedelta(days=30)
                current.save(update_fields=["valid_until", "updated_at"])
            else:
                Subscription.objects.create(
                    user=user, source=Subscription.Source.ADMIN, status=Subscription.Status.ACTIVE,
                    valid_until=now + timedelta(days=30),
                )
        self.message_user(request, f"Granted 30 days to {queryset.count()} user(s).", messages.SUCCESS)


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
