from django.apps import AppConfig


def _close_market_data_clients(**_) -> None:
    from signals.market_data.live import close_shared_clients

    close_shared_clients()


class SignalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signals"
    verbose_name = "Signals"

    def ready(self) -> None:
        from celery import signals as celery_signals

        # the shared ccxt clients (one per exchange per process) are closed when a worker (process) stops;
        # interpreter exit is covered by the atexit hook in signals.market_data.live
        celery_signals.worker_process_shutdown.connect(_close_market_data_clients, weak=False)
        celery_signals.worker_shutdown.connect(_close_market_data_clients, weak=False)
