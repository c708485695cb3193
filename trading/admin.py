from django.contrib import admin

from trading.models import (
    DailyRiskState,
    Fill,
    FundingCharge,
    LiveAccount,
    Order,
    PaperAccount,
    Position,
    TradeRefusal,
    TradingSwitch,
)


class OrderInline(admin.TabularInline):
    model = Order
    extra = 0
    can_delete = False
    fields = ("client_order_id", "leg", "type", "side", "quantity", "price", "trigger_price", "state", "filled_quantity", "average_price")
    readonly_fields = fields


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "symbol", "side", "mode", "exchange", "status", "quantity", "entry_price", "stop_price", "realised_pnl", "fees", "funding", "close_reason", "opened_at", "closed_at")
    list_filter = ("mode", "status", "side", "exchange", "close_reason")
    search_fields = ("user__username", "user__telegram_id", "symbol__symbol")
    date_hierarchy = "created_at"
    list_select_related = ("user", "symbol")
    inlines = [OrderInline]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("client_order_id", "exchange", "leg", "type", "side", "quantity", "price", "trigger_price", "state", "filled_quantity", "created_at")
    list_filter = ("state", "leg", "type", "exchange", "reduce_only")
    search_fields = ("client_order_id", "exchange_order_id")
    date_hierarchy = "created_at"


@admin.register(Fill)
class FillAdmin(admin.ModelAdmin):
    list_display = ("order", "trade_id", "price", "quantity", "fee", "liquidity", "realised_pnl", "filled_at")
    list_filter = ("liquidity",)
    search_fields = ("trade_id", "order__client_order_id")
    date_hierarchy = "filled_at"


@admin.register(PaperAccount)
class PaperAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "starting_balance", "balance", "peak_equity", "paused", "updated_at")
    search_fields = ("user__username", "user__telegram_id")
    list_select_related = ("user",)
    actions = ["resume_auto_trading"]

    @admin.display(description="auto-trading paused")
    def paused(self, account: PaperAccount) -> str:
        return account.user.auto_trading_paused_reason or "-"

    @admin.action(description="Resume auto-trading (after a drawdown or daily-loss pause)")
    def resume_auto_trading(self, request, queryset):
        from trading.services import user_auto_trading_resume

        for account in queryset.select_related("user"):
            user_auto_trading_resume(user=account.user)
        self.message_user(request, f"Auto-trading resumed for {queryset.count()} user(s).")


@admin.register(LiveAccount)
class LiveAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "exchange", "equity", "peak_equity", "observed_at", "paused")
    search_fields = ("user__username", "user__telegram_id")
    list_select_related = ("user",)
    readonly_fields = ("user", "exchange", "equity", "peak_equity", "observed_at", "updated_at")
    actions = ["resume_auto_trading"]

    @admin.display(description="auto-trading paused")
    def paused(self, account: LiveAccount) -> str:
        return account.user.auto_trading_paused_reason or "-"

    @admin.action(description="Resume auto-trading (the live peak restarts from the exchange equity)")
    def resume_auto_trading(self, request, queryset):
        from trading.services import user_auto_trading_resume

        for account in queryset.select_related("user"):
            user_auto_trading_resume(user=account.user)
        self.message_user(request, f"Auto-trading resumed for {queryset.count()} user(s).")


@admin.register(TradeRefusal)
class TradeRefusalAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "signal", "reason", "detail", "notified")
    list_filter = ("reason", "notified")
    search_fields = ("user__username", "user__telegram_id", "signal__symbol__symbol")
    list_select_related = ("user", "signal__symbol")
    date_hierarchy = "created_at"


@admin.register(FundingCharge)
class FundingChargeAdmin(admin.ModelAdmin):
    list_display = ("funding_time", "position", "rate", "mark_price", "quantity", "amount")
    search_fields = ("position__user__username", "position__symbol__symbol")
    date_hierarchy = "funding_time"


@admin.register(TradingSwitch)
class TradingSwitchAdmin(admin.ModelAdmin):
    list_display = ("__str__", "auto_trading_paused", "reason", "updated_at")


@admin.register(DailyRiskState)
class DailyRiskStateAdmin(admin.ModelAdmin):
    list_display = ("user", "day", "start_equity", "realised_pnl", "positions_opened", "loss_limit_hit")
    list_filter = ("loss_limit_hit",)
    search_fields = ("user__username", "user__telegram_id")
    date_hierarchy = "day"
