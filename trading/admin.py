from django.contrib import admin

from trading.models import DailyRiskState, Fill, Order, PaperAccount, Position


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
    list_display = ("user", "starting_balance", "balance", "peak_equity", "updated_at")
    search_fields = ("user__username", "user__telegram_id")


@admin.register(DailyRiskState)
class DailyRiskStateAdmin(admin.ModelAdmin):
    list_display = ("user", "day", "start_equity", "realised_pnl", "positions_opened", "loss_limit_hit")
    list_filter = ("loss_limit_hit",)
    search_fields = ("user__username", "user__telegram_id")
    date_hierarchy = "day"
