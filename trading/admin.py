from django.contrib import admin
from django.utils.html import format_html

from signals.display import money_text, percent_text, price_text, symbol_cell, two_lines
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

SHORT_NAME = 18  # characters of a user name shown in a list (the whole name is in the tooltip)


def _user_cell(user) -> str:
    name = str(user)
    if len(name) <= SHORT_NAME:
        return name
    return format_html('<span title="{}">{}…</span>', name, name[: SHORT_NAME - 1])


class OrderInline(admin.TabularInline):
    model = Order
    extra = 0
    can_delete = False
    fields = (
        "client_order_id",
        "leg",
        "type",
        "side",
        "quantity",
        "price",
        "trigger_price",
        "state",
        "filled_quantity",
        "average_price",
    )
    readonly_fields = fields


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    # Prices and quantities at the market's precision, money in cents, net PnL after fees and funding; exchange and
    # close reason are filters: the list fits a 1280 px screen (web/tests/test_admin_layout_browser.py).
    list_display = (
        "id",
        "user_text",
        "symbol_text",
        "side_text",
        "status",
        "quantity_text",
        "entry_text",
        "stop_text",
        "net_pnl_text",
        "opened",
    )
    list_filter = ("mode", "status", "side", "exchange", "close_reason")
    search_fields = ("user__username", "user__telegram_id", "symbol__symbol")
    date_hierarchy = "created_at"
    list_select_related = ("user", "symbol")
    inlines = [OrderInline]

    @admin.display(description="user", ordering="user__username")
    def user_text(self, position: Position) -> str:
        return _user_cell(position.user)

    @admin.display(description="symbol", ordering="symbol__symbol")
    def symbol_text(self, position: Position) -> str:
        return symbol_cell(position.symbol)

    @admin.display(description="side / mode", ordering="side")
    def side_text(self, position: Position) -> str:
        return two_lines(position.get_side_display(), position.mode)

    @admin.display(description="quantity", ordering="quantity")
    def quantity_text(self, position: Position) -> str:
        return price_text(position.quantity, position.symbol.step_size)

    @admin.display(description="entry", ordering="entry_price")
    def entry_text(self, position: Position) -> str:
        return price_text(position.entry_price, position.symbol.tick_size)

    @admin.display(description="stop", ordering="stop_price")
    def stop_text(self, position: Position) -> str:
        return price_text(position.stop_price, position.symbol.tick_size, reference=position.entry_price)

    @admin.display(description="net PnL")  # after fees and funding
    def net_pnl_text(self, position: Position) -> str:
        return money_text(position.net_pnl)

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, position: Position) -> str:
        return f"{position.opened_at:%Y-%m-%d %H:%M}" if position.opened_at else "–"


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "client_order_id",
        "symbol",
        "leg_text",
        "side",
        "quantity_text",
        "price_text",
        "trigger_price_text",
        "state",
        "filled_text",
        "created",
    )
    list_filter = ("state", "leg", "type", "exchange", "reduce_only")
    search_fields = ("client_order_id", "exchange_order_id")
    date_hierarchy = "created_at"
    list_select_related = ("position__symbol",)

    @admin.display(description="symbol", ordering="position__symbol__symbol")
    def symbol(self, order: Order) -> str:
        return symbol_cell(order.position.symbol)

    @admin.display(description="leg / type", ordering="leg")
    def leg_text(self, order: Order) -> str:
        return two_lines(order.get_leg_display(), order.get_type_display())

    @admin.display(description="quantity", ordering="quantity")
    def quantity_text(self, order: Order) -> str:
        return price_text(order.quantity, order.position.symbol.step_size)

    @admin.display(description="price", ordering="price")
    def price_text(self, order: Order) -> str:
        return price_text(order.price, order.position.symbol.tick_size)

    @admin.display(description="trigger", ordering="trigger_price")
    def trigger_price_text(self, order: Order) -> str:
        return price_text(order.trigger_price, order.position.symbol.tick_size)

    @admin.display(description="filled", ordering="filled_quantity")
    def filled_text(self, order: Order) -> str:
        return price_text(order.filled_quantity, order.position.symbol.step_size)

    @admin.display(description="created", ordering="created_at")
    def created(self, order: Order) -> str:
        return f"{order.created_at:%Y-%m-%d %H:%M}"


@admin.register(Fill)
class FillAdmin(admin.ModelAdmin):
    list_display = (
        "order",
        "trade_id",
        "price_text",
        "quantity_text",
        "fee_text",
        "liquidity",
        "pnl_text",
        "filled_at",
    )
    list_filter = ("liquidity",)
    search_fields = ("trade_id", "order__client_order_id")
    date_hierarchy = "filled_at"
    list_select_related = ("position__symbol", "order")

    @admin.display(description="price", ordering="price")
    def price_text(self, fill: Fill) -> str:
        return price_text(fill.price, fill.position.symbol.tick_size)

    @admin.display(description="quantity", ordering="quantity")
    def quantity_text(self, fill: Fill) -> str:
        return price_text(fill.quantity, fill.position.symbol.step_size)

    @admin.display(description="fee", ordering="fee")
    def fee_text(self, fill: Fill) -> str:
        return money_text(fill.fee, 4)

    @admin.display(description="realised PnL", ordering="realised_pnl")
    def pnl_text(self, fill: Fill) -> str:
        return money_text(fill.realised_pnl)


class _AccountAdmin(admin.ModelAdmin):
    """What the paper and the live account pages share: the peak, the pause and the action that lifts it."""

    search_fields = ("user__username", "user__telegram_id")
    list_select_related = ("user",)
    actions = ["resume_auto_trading"]
    resume_description = "Resume auto-trading"

    @admin.display(description="peak equity", ordering="peak_equity")
    def peak_text(self, account: PaperAccount | LiveAccount) -> str:
        return money_text(account.peak_equity)

    @admin.display(description="auto-trading paused")
    def paused(self, account: PaperAccount | LiveAccount) -> str:
        return account.user.auto_trading_paused_reason or "-"

    @admin.action(description="Resume auto-trading")
    def resume_auto_trading(self, request, queryset):
        from trading.services import user_auto_trading_resume

        for account in queryset.select_related("user"):
            user_auto_trading_resume(user=account.user)
        self.message_user(request, f"Auto-trading resumed for {queryset.count()} user(s).")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "resume_auto_trading" in actions:
            function, name, _ = actions["resume_auto_trading"]
            actions["resume_auto_trading"] = (function, name, self.resume_description)
        return actions


@admin.register(PaperAccount)
class PaperAccountAdmin(_AccountAdmin):
    list_display = ("user", "starting_text", "balance_text", "peak_text", "paused", "updated_at")
    resume_description = "Resume auto-trading (after a drawdown or daily-loss pause)"

    @admin.display(description="starting balance", ordering="starting_balance")
    def starting_text(self, account: PaperAccount) -> str:
        return money_text(account.starting_balance)

    @admin.display(description="balance", ordering="balance")
    def balance_text(self, account: PaperAccount) -> str:
        return money_text(account.balance)


@admin.register(LiveAccount)
class LiveAccountAdmin(_AccountAdmin):
    list_display = ("user", "exchange", "equity_text", "peak_text", "observed_at", "paused")
    readonly_fields = ("user", "exchange", "equity", "peak_equity", "observed_at", "updated_at")
    resume_description = "Resume auto-trading (the live peak restarts from the exchange equity)"

    @admin.display(description="equity", ordering="equity")
    def equity_text(self, account: LiveAccount) -> str:
        return money_text(account.equity)


@admin.register(TradeRefusal)
class TradeRefusalAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "signal", "reason", "detail", "notified")
    list_filter = ("reason", "notified")
    search_fields = ("user__username", "user__telegram_id", "signal__symbol__symbol")
    list_select_related = ("user", "signal__symbol")
    date_hierarchy = "created_at"


@admin.register(FundingCharge)
class FundingChargeAdmin(admin.ModelAdmin):
    list_display = ("funding_time", "position", "rate_text", "mark_price_text", "quantity", "amount_text")
    search_fields = ("position__user__username", "position__symbol__symbol")
    date_hierarchy = "funding_time"
    list_select_related = ("position__symbol", "position__user")

    @admin.display(description="rate", ordering="rate")
    def rate_text(self, charge: FundingCharge) -> str:
        return percent_text(charge.rate, 4, fraction=True, signed=True)

    @admin.display(description="mark price", ordering="mark_price")
    def mark_price_text(self, charge: FundingCharge) -> str:
        return price_text(charge.mark_price, charge.position.symbol.tick_size)

    @admin.display(description="amount", ordering="amount")
    def amount_text(self, charge: FundingCharge) -> str:
        return money_text(charge.amount, 4)


@admin.register(TradingSwitch)
class TradingSwitchAdmin(admin.ModelAdmin):
    list_display = ("__str__", "auto_trading_paused", "reason", "updated_at")


@admin.register(DailyRiskState)
class DailyRiskStateAdmin(admin.ModelAdmin):
    list_display = ("user", "day", "start_text", "pnl_text", "positions_opened", "loss_limit_hit")
    list_filter = ("loss_limit_hit",)
    search_fields = ("user__username", "user__telegram_id")
    date_hierarchy = "day"

    @admin.display(description="start equity", ordering="start_equity")
    def start_text(self, state: DailyRiskState) -> str:
        return money_text(state.start_equity)

    @admin.display(description="realised PnL", ordering="realised_pnl")
    def pnl_text(self, state: DailyRiskState) -> str:
        return money_text(state.realised_pnl)
