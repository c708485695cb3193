"""Settings for the test suite: the normal settings with DJANGO_ENV=test.

Tasks run eagerly unless a test starts a real worker (the worker gets its own environment); passwords hash fast.
DATABASE_URL and REDIS_URL still come from the environment, so `make test` on a machine with PostgreSQL and Redis
runs against them.
"""

import os

os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
