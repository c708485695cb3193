from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from accounts.admin_confirmation import action_confirmation_page, action_confirmed
from accounts.login_throttle import PASSWORD, lockout_message, lockout_remaining
from accounts.models import (
    ExchangeCredential,
    Feature,
    LoginToken,
    Payment,
    Plan,
    Subscription,
    TelegramUser,
    UserPreferences,
    WebhookEvent,
)
from accounts.services import telegram_users_admin_set, telegram_users_ban_set
from accounts.solana_pay import amount_text
from accounts.subscriptions import (
    CheckoutError,
    payment_refund,
    subscription_extend,
    subscription_grant,
    subscriptions_end_now,
)


class LockoutAwareAuthenticationForm(AdminAuthenticationForm):
    """The admin login form, saying so when the username or the client is locked out (accounts/login_throttle.py)."""

    def clean(self):
        remaining = lockout_remaining(PASSWORD, request=self.request, username=self.cleaned_data.get("username"))
        if remaining:
            raise ValidationError(lockout_message(remaining), code="locked_out")
        return super().clean()


admin.site.login_form = LockoutAwareAuthenticationForm


class UserPreferencesInline(admin.StackedInline):
    """Shown, not edited: a user's settings change through the bot, the dashboard or the API, where
    ``accounts.services.preferences_update`` applies the rules (bounds, symbols, live needs a plan and an exchange)."""

    model = UserPreferences
    can_delete = False
    extra = 0

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = (
        "telegram_id",
        "username",
        "is_admin",
        "is_banned",
        "is_active",
        "auto_trading_enabled",
        "joined_at",
        "last_seen_at",
    )
    list_filter = ("is_admin", "is_banned", "is_active", "auto_trading_enabled", "language")
    search_fields = ("telegram_id", "username", "first_name")
    date_hierarchy = "joined_at"
    inlines = [UserPreferencesInline]
    # changed only through the actions (and the bot's admin commands), which call the services that also switch
    # auto-trading off, close a banned user's live sockets and log the change
    readonly_fields = ("is_banned", "is_admin", "auto_trading_enabled", "auto_trading_paused_reason")
    actions = ("ban_users", "unban_users", "make_admin", "grant_subscription_30_days")

    @admin.action(description="Ban selected users", permissions=["change"])
    def ban_users(self, request, queryset):
        """Destructive: asks for confirmation first; then bans, stops their auto-trading and logs each user."""
        if not action_confirmed(request):
            return action_confirmation_page(
                self,
                request,
                queryset,
                action="ban_users",
                question=f"Ban {queryset.count()} user(s)?",
                consequence="The bot stops serving them, broadcasts skip them and their auto-trading is switched off.",
            )
        users = telegram_users_ban_set(users=list(queryset.filter(is_banned=False)), banned=True)
        for user in users:
            self.log_change(request, user, "Banned (admin action); auto-trading switched off.")
        self.message_user(request, f"Banned {len(users)} user(s).", messages.SUCCESS)
        return None

    @admin.action(description="Unban selected users", permissions=["change"])
    def unban_users(self, request, queryset):
        users = telegram_users_ban_set(users=list(queryset.filter(is_banned=True)), banned=False)
        for user in users:
            self.log_change(request, user, "Unbanned (admin action).")
        self.message_user(request, f"Unbanned {len(users)} user(s).", messages.SUCCESS)

    @admin.action(description="Make selected users bot admins", permissions=["change"])
    def make_admin(self, request, queryset):
        users = telegram_users_admin_set(users=list(queryset.filter(is_admin=False)), admin=True)
        for user in users:
            self.log_change(request, user, "Made a bot admin (admin action).")
        self.message_user(request, f"{len(users)} user(s) are now admins.", messages.SUCCESS)

    @admin.action(description="Grant or extend 30 days of the default plan", permissions=["change"])
    def grant_subscription_30_days(self, request, queryset):
        users = list(queryset)
        try:
            for user in users:
                subscription = subscription_grant(user=user, days=30)
                self.log_change(
                    request,
                    user,
                    f"Granted/extended 30 day(s) of {subscription.plan} (valid until "
                    f"{subscription.valid_until:%Y-%m-%d %H:%M} UTC)."
                    if subscription.valid_until
                    else f"Granted 30 day(s) of {subscription.plan}: it is open-ended.",
                )
        except CheckoutError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"Granted 30 days to {len(users)} user(s).", messages.SUCCESS)


@admin.register(UserPreferences)
class UserPreferencesAdmin(admin.ModelAdmin):
    list_display = ("user", "paper_mode", "leverage", "position_size_pct", "max_open_positions", "dm_alerts")
    list_filter = ("paper_mode", "dm_alerts", "correlation_filter", "funding_alerts", "default_pnl_period")
    search_fields = ("user__username", "user__telegram_id")


class PlanForm(forms.ModelForm):
    features = forms.MultipleChoiceField(
        choices=Feature.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="what the plan unlocks (signals are always free)",
    )

    class Meta:
        model = Plan
        fields = (
            "code",
            "name",
            "description",
            "period_days",
            "features",
            "price_usd",
            "whop_plan_id",
            "solana_amount",
            "solana_mint",
            "solana_decimals",
            "is_active",
            "sort_order",
        )


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = ("name", "code", "period_days", "features", "price_usd", "whop_plan_id", "solana_price", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "code", "whop_plan_id")

    @admin.display(description="Solana price")
    def solana_price(self, plan: Plan) -> str:
        if not plan.solana_amount:
            return "–"
        return f"{amount_text(plan.solana_amount, plan.solana_decimals)} {plan.solana_currency}"


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("user", "plan", "status", "source", "valid_until", "external_id", "created_at")
    list_filter = ("status", "source", "plan")
    search_fields = ("user__username", "user__telegram_id", "external_id")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)
    actions = ("extend_30_days", "end_now")

    @admin.action(description="Extend by 30 days (Solana / admin time)", permissions=["change"])
    def extend_30_days(self, request, queryset):
        """Whop memberships get their validity from Whop; they are left alone."""
        extended = 0
        for subscription in queryset.exclude(source=Subscription.Source.WHOP).select_related("user", "plan"):
            extended_row = subscription_extend(
                user=subscription.user, plan=subscription.plan, days=30, source=Subscription.Source.ADMIN
            )
            self.log_change(request, extended_row, "Extended by 30 days (admin action).")
            extended += 1
        self.message_user(
            request, f"Extended {extended} subscription(s); Whop memberships are renewed by Whop.", messages.SUCCESS
        )

    @admin.action(description="End now (downgrade)", permissions=["change"])
    def end_now(self, request, queryset):
        if not action_confirmed(request):
            return action_confirmation_page(
                self,
                request,
                queryset,
                action="end_now",
                question=f"End {queryset.count()} subscription(s) now?",
                consequence="Their paid features stop at once; open positions are kept and managed.",
            )
        rows = subscriptions_end_now(subscriptions=list(queryset))
        for row in rows:
            self.log_change(request, row, "Ended now (admin action).")
        self.message_user(request, f"Ended {len(rows)} subscription(s).", messages.SUCCESS)
        return None


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "plan", "gateway", "status", "amount_display", "external_id", "paid_at")
    list_filter = ("gateway", "status", "plan", "currency")
    search_fields = ("user__username", "user__telegram_id", "external_id", "reference")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Payment._meta.fields if f.name != "note"]
    actions = ("refund",)

    def has_add_permission(self, request):
        return False

    @admin.display(description="amount")
    def amount_display(self, payment: Payment) -> str:
        return f"{amount_text(payment.amount_base_units, payment.decimals)} {payment.currency}"

    @admin.action(description="Refund: record it and take back the time it bought", permissions=["change"])
    def refund(self, request, queryset):
        if not action_confirmed(request):
            return action_confirmation_page(
                self,
                request,
                queryset,
                action="refund",
                question=f"Record {queryset.count()} refund(s)?",
                consequence="Send the money back yourself (in Whop, or from the merchant wallet). Each paid "
                "payment's subscription loses one period and ends if nothing is left.",
            )
        refunded = 0
        for payment in queryset.filter(status=Payment.Status.PAID):
            payment_refund(payment=payment, note=f"refunded by {request.user}")
            self.log_change(request, payment, "Refund recorded (admin action).")
            refunded += 1
        self.message_user(request, f"Recorded {refunded} refund(s).", messages.SUCCESS)
        return None


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
    readonly_fields = (
        "provider",
        "event_id",
        "event_type",
        "payload",
        "status",
        "error",
        "received_at",
        "processed_at",
    )

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
