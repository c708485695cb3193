from django.apps import AppConfig


class TradingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        # accounts decides whether auto-trading may be switched on; what paper trading needs is the trading app's
        # (imported here, not at module level: services import models, which need the app registry ready)
        from accounts.policy import auto_trading_requirement_register
        from trading.services import paper_auto_trading_requirement

        auto_trading_requirement_register(paper_auto_trading_requirement)
