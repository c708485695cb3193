from django.contrib import admin, messages

from accounts.admin_confirmation import action_confirmation_page, action_confirmed
from config.events import publish
from signals.display import percent_text, price_text, symbol_cell, two_lines
from signals.models import FundingSnapshot, ScanRun, Signal, Symbol
from signals.services import symbol_mute

OUTCOME_LABELS = {"tp1": "TP1", "tp2": "TP2", "sl": "stop", "breakeven": "break-even", "expired": "expired"}


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "sector",
        "is_active",
        "is_muted",
        "max_leverage",
        "tick_size",
        "step_size",
        "min_quantity",
    )
    list_filter = ("is_active", "is_muted", "sector")
    search_fields = ("symbol", "base")
    actions = ("mute_globally", "unmute_globally")

    @admin.action(description="Mute selected symbols globally (no new signals)", permissions=["change"])
    def mute_globally(self, request, queryset):
        """Destructive: asks for confirmation first; then mutes through signals.services.symbol_mute and logs each."""
        if not action_confirmed(request):
            return action_confirmation_page(
                self,
                request,
                queryset,
                action="mute_globally",
                question=f"Mute {queryset.count()} symbol(s) globally?",
                consequence="No new signals are created for them, for anybody, until they are unmuted.",
            )
        symbols = list(queryset.filter(is_muted=False))
        for symbol in symbols:
            symbol_mute(symbol=symbol, muted=True)
            self.log_change(request, symbol, "Muted globally (admin action).")
        self.message_user(request, f"Muted {len(symbols)} symbol(s).", messages.SUCCESS)
        return None

    @admin.action(description="Unmute selected symbols", permissions=["change"])
    def unmute_globally(self, request, queryset):
        symbols = list(queryset.filter(is_muted=True))
        for symbol in symbols:
            symbol_mute(symbol=symbol, muted=False)
            self.log_change(request, symbol, "Unmuted globally (admin action).")
        self.message_user(request, f"Unmuted {len(symbols)} symbol(s).", messages.SUCCESS)


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    # Prices at the market's precision, the outcome with its PnL in one column, the time without seconds: the list
    # fits a 1280 px screen next to the filters (web/tests/test_admin_layout_browser.py measures it).
    list_display = (
        "id",
        "symbol_text",
        "side_text",
        "entry_text",
        "stop_text",
        "tp1_text",
        "tp2_text",
        "risk_level",
        "outcome_text",
        "created",
    )
    list_filter = ("source", "side", "status", "outcome", "risk_level", "timeframe")
    search_fields = ("symbol__symbol", "headline", "dedupe_key")
    date_hierarchy = "created_at"
    list_select_related = ("symbol",)
    actions = ("resend",)

    @admin.display(description="symbol", ordering="symbol__symbol")
    def symbol_text(self, signal: Signal) -> str:
        return symbol_cell(signal.symbol)

    @admin.display(description="side / source", ordering="side")
    def side_text(self, signal: Signal) -> str:
        return two_lines(signal.get_side_display(), signal.source)

    def _level(self, signal: Signal, value) -> str:
        return price_text(value, signal.symbol.tick_size, reference=signal.entry)

    @admin.display(description="entry", ordering="entry")
    def entry_text(self, signal: Signal) -> str:
        return self._level(signal, signal.entry)

    @admin.display(description="stop", ordering="stop")
    def stop_text(self, signal: Signal) -> str:
        return self._level(signal, signal.stop)

    @admin.display(description="TP1", ordering="tp1")
    def tp1_text(self, signal: Signal) -> str:
        return self._level(signal, signal.tp1)

    @admin.display(description="TP2", ordering="tp2")
    def tp2_text(self, signal: Signal) -> str:
        return self._level(signal, signal.tp2)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_text(self, signal: Signal) -> str:
        if signal.outcome == Signal.Outcome.OPEN:
            return "open"
        label = OUTCOME_LABELS.get(signal.outcome, signal.outcome)
        return f"{label} {percent_text(signal.outcome_pnl_pct, signed=True)}"

    @admin.display(description="created", ordering="created_at")
    def created(self, signal: Signal) -> str:
        return f"{signal.created_at:%Y-%m-%d %H:%M}"

    @admin.action(
        description="Resend selected signals (to subscribers who have not received them)", permissions=["change"]
    )
    def resend(self, request, queryset):
        """Re-announce ``signal.created``; its consumers are idempotent, so only those who missed it get it."""
        signals = list(queryset.select_related("symbol"))
        for signal in signals:
            publish("signal.created", signal_id=signal.pk)
            self.log_change(request, signal, "Resent: signal.created announced again (admin action).")
        self.message_user(request, f"Resending {len(signals)} signal(s).", messages.SUCCESS)


@admin.register(FundingSnapshot)
class FundingSnapshotAdmin(admin.ModelAdmin):
    list_display = ("symbol", "exchange", "rate_text", "funding_time", "mark_price_text")
    list_filter = ("exchange",)
    search_fields = ("symbol__symbol",)
    date_hierarchy = "funding_time"
    list_select_related = ("symbol",)

    @admin.display(description="rate", ordering="rate")
    def rate_text(self, snapshot: FundingSnapshot) -> str:
        return percent_text(snapshot.rate, 4, fraction=True, signed=True)

    @admin.display(description="mark price", ordering="mark_price")
    def mark_price_text(self, snapshot: FundingSnapshot) -> str:
        return price_text(snapshot.mark_price, snapshot.symbol.tick_size)


@admin.register(ScanRun)
class ScanRunAdmin(admin.ModelAdmin):
    list_display = (
        "scan_time",
        "source",
        "symbols_total",
        "symbols_scanned",
        "symbols_skipped",
        "candidates",
        "signals_created",
        "signals_refused",
        "batches_done",
        "batches_total",
        "duration_ms",
        "finished_at",
    )
    list_filter = ("source",)
    date_hierarchy = "scan_time"
    readonly_fields = [field.name for field in ScanRun._meta.fields]
