"""Read-only admin for news articles (why each one did or did not become a signal) and funding alerts."""

from django.contrib import admin

from news.models import FundingAlert, NewsArticle


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the pipelines only: browse and explain, never edit by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(NewsArticle)
class NewsArticleAdmin(ReadOnlyAdmin):
    list_display = (
        "published_at",
        "source_name",
        "title",
        "tickers",
        "rank_position",
        "decision",
        "model_used",
        "signal",
    )
    list_filter = ("decision", "source", "model_used")
    search_fields = ("title", "url", "decision_detail")
    date_hierarchy = "published_at"
    list_select_related = ("signal",)
    raw_id_fields = ("duplicate_of", "signal")


@admin.register(FundingAlert)
class FundingAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "symbol", "period_start", "recipients")
    list_filter = ("kind",)
    search_fields = ("symbol__symbol", "dedupe_key")
    list_select_related = ("symbol",)
