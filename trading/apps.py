from django.apps import AppConfig


class TradingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        # accounts decides whether auto-trading may be switched on; what paper trading needs is the trading app's
        # (imported here, not at module level: these modules import models, which need the app registry ready)
        from accounts.policy import auto_trading_requirement_register
        from trading.executors.live import limit_entry_settle_scheduler_register
        from trading.ledger import paper_auto_trading_requirement
        from trading.tasks_live import settle_limit_entry_later

        auto_trading_requirement_register(paper_auto_trading_requirement)
        # the live executor schedules the next check of a resting limit entry through the task module above it
        limit_entry_settle_scheduler_register(settle_limit_entry_later)
