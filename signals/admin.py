from django.contrib import admin, messages

from accounts.admin_confirmation import action_confirmation_page, action_confirmed
from config.events import publish
from signals.models import FundingSnapshot, ScanRun, Signal, Symbol
from signals.services import symbol_mute


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ("symbol", "sector", "is_active", "is_muted", "max_leverage", "tick_size", "step_size", "min_quantity")
    list_filter = ("is_active", "is_muted", "sector")
    search_fields = ("symbol", "base")
    actions = ("mute_globally", "unmute_globally")

    @admin.action(description="Mute selected symbols globally (no new signals)", permissions=["change"])
    def mute_globally(self, request, queryset):
        """Destructive: asks for confirmation first; then mutes through signals.services.symbol_mute and logs each."""
        if not action_confirmed(request):
            return action_confirmation_page(
                self, request, queryset, action="mute_globally", question=f"Mute {queryset.count()} symbol(s) globally?",
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
    list_display = ("id", "symbol", "side", "source", "entry", "stop", "tp1", "tp2", "risk_level", "status", "outcome", "outcome_pnl_pct", "created_at")
    list_filter = ("source", "side", "status", "outcome", "risk_level", "timeframe")
    search_fields = ("symbol__symbol", "headline", "dedupe_key")
    date_hierarchy = "created_at"
    list_select_related = ("symbol",)
    actions = ("resend",)

    @admin.action(description="Resend selected signals (to subscribers who have not received them)", permissions=["change"])
    def resend(self, request, queryset):
        """Re-announce ``signal.created``; its consumers are idempotent, so only those who missed it get it."""
        signals = list(queryset.select_related("symbol"))
        for signal in signals:
            publish("signal.created", signal_id=signal.pk)
            self.log_change(request, signal, "Resent: signal.created announced again (admin action).")
        self.message_user(request, f"Resending {len(signals)} signal(s).", messages.SUCCESS)


@admin.register(FundingSnapshot)
class FundingSnapshotAdmin(admin.ModelAdmin):
    list_display = ("symbol", "exchange", "rate", "funding_time", "mark_price")
    list_filter = ("exchange",)
    search_fields = ("symbol__symbol",)
    date_hierarchy = "funding_time"
    list_select_related = ("symbol",)


@admin.register(ScanRun)
class ScanRunAdmin(admin.ModelAdmin):
    list_display = (
        "scan_time", "source", "symbols_total", "symbols_scanned", "symbols_skipped", "candidates",
        "signals_created", "signals_refused", "batches_done", "batches_total", "duration_ms", "finished_at",
    )
    list_filter = ("source",)
    date_hierarchy = "scan_time"
    readonly_fields = [field.name for field in ScanRun._meta.fields]
