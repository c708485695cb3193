from django.apps import AppConfig


class WiringConfig(AppConfig):
    """The ``config`` package as an app only to register its start-up checks (config/checks.py)."""

    name = "config"
    label = "config_wiring"
    verbose_name = "Configuration"

    def ready(self) -> None:
        from config.checks import register_checks

        register_checks()
