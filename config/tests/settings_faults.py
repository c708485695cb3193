"""Settings of the web server the fault tests start: the normal settings plus the test-only fault routes."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "config.tests.urls_faults"

# Workers of the fault tests: a message left unacknowledged by a killed worker becomes visible again after 5 s (3600
# in production) and the surviving worker looks for such messages every second.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 5,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_restore_limit": 500,
}
