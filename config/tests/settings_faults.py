"""Settings of the web server the fault tests start: the normal settings plus the test-only fault routes."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "config.tests.urls_faults"
