"""Django settings, read from the environment with django-environ.

Every variable is documented in `.env.example`. Three environments:

* ``development`` (default): SQLite file, in-process cache, Celery tasks run eagerly in the calling process unless a
  broker is configured. Nothing is generated at random: the development SECRET_KEY and Fernet key are fixed,
  documented, insecure constants so that a restart never makes stored data unreadable.
* ``test``: like development; the test suite points DATABASE_URL/REDIS_URL at real servers when they exist.
* ``production``: refuses to start without SECRET_KEY and FERNET_KEYS; secure cookies, HSTS, JSON logs.

Code reads settings as ``settings.NAME`` only (never ``getattr`` with a default): every name is declared here. A
variable with a fixed set of values (``env_choice``) stops start-up with ImproperlyConfigured on any other value.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_dotenv = BASE_DIR / ".env"
if _dotenv.exists():
    environ.Env.read_env(_dotenv)


def env_choice(name: str, *, default: str, allowed: Iterable[str]) -> str:
    """The variable ``name``, which must be one of ``allowed``: a typo stops start-up instead of meaning the default."""
    allowed = tuple(allowed)
    value = env.str(name, default=default)
    if value not in allowed:
        raise ImproperlyConfigured(f"{name}={value!r} is not a valid value; allowed: {', '.join(allowed)}.")
    return value


DJANGO_ENV = env_choice("DJANGO_ENV", default="development", allowed=("development", "test", "production"))
IS_PRODUCTION = DJANGO_ENV == "production"

DEBUG = env.bool("DEBUG", default=not IS_PRODUCTION)

_DEV_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"
SECRET_KEY = env.str("SECRET_KEY", default="" if IS_PRODUCTION else _DEV_SECRET_KEY)
if IS_PRODUCTION and not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production (DJANGO_ENV=production).")


def _development_fernet_key() -> str:
    """A fixed, insecure key for development: stable across restarts, so encrypted rows stay readable."""
    digest = hashlib.sha256(b"perps-signals development fernet key (insecure)").digest()
    return base64.urlsafe_b64encode(digest).decode()


# Comma-separated Fernet keys, newest first (MultiFernet encrypts with the first, decrypts with any).
FERNET_KEYS = env.list("FERNET_KEYS", default=[] if IS_PRODUCTION else [_development_fernet_key()])
if IS_PRODUCTION and not FERNET_KEYS:
    raise ImproperlyConfigured("FERNET_KEYS must be set in production (comma-separated Fernet keys, newest first).")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if not IS_PRODUCTION else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc served from /static/ (works offline)
    "django_celery_beat",
    "channels",
    "config.apps.WiringConfig",  # start-up checks (config/checks.py)
    "accounts",
    "signals",
    "trading",
    "news",
    "analytics",
    "telegram_bridge",
    "web",
    "demo",
]

MIDDLEWARE = [
    "config.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------------------------
# The embedded default is a SQLite file next to manage.py; production uses PostgreSQL through DATABASE_URL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web server and in-process tasks share the file without "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
# PostgreSQL connection pool (psycopg_pool) for the ASGI web server, where every request runs in its own thread:
# bounded, reused connections instead of a new one per request (0 = no pool; production compose sets it).
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=0)
if DB_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses a pool together with persistent connections
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": 10,
    }
# Threads per web process that run the (synchronous) views under ASGI (config/asgi.py): bounded, so a burst queues
# instead of spawning a thread per request; the pool above needs at least this many connections per process.
WEB_SYNC_THREADS = env.int("WEB_SYNC_THREADS", default=4)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery -----------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "perps"}}

# Embedded default: with neither CELERY_BROKER_URL nor REDIS_URL, tasks run eagerly in the calling process
# (task_always_eager). The single-process demo needs no server and loses nothing on restart because every state
# change is committed to the database before the next step runs. With a broker, tasks go to named queues.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ("scan", "trade", "telegram", "default")
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Unacked (acks_late) messages of a worker that died are re-delivered after this many seconds. The queue is only a
# doorbell: the work itself is stored first (signal fan-outs, execution intents, delivery rows, webhook updates) and
# beat sweepers re-queue what is not done within seconds to a minute, so after a kill -9 or a Redis crash nothing
# waits for this redelivery. It is the last resort for tasks with no row of their own, and it must stay ABOVE the
# longest time a live worker may legitimately hold a message unacknowledged, or Redis hands it to a second worker
# while the first still runs it: the longest hard time limit of a late-acking task (600 s, deliveries_send) and the
# longest retry countdown (deliveries_send caps it below 600 s; on Redis a countdown is held unacknowledged).
# Hence 900 s (15 min) instead of Redis' 3600.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=900)}
# A late-acking task that raises is acknowledged (Celery's default, kept): its work is a database row that the sweepers
# re-queue, and a poisoned message must not loop. Tasks that the broker should run again on a transient error retry
# (autoretry_for) on top of the in-place retries of config.celery.ReliableTask.
# SIGTERM to a worker: it takes no new task and lets the running ones finish for this many seconds, then cancels
# them (acks_late ones go back to their queue; the sweepers re-queue the others' rows) and exits, so a stop takes
# at most ~this + a few seconds (docker-compose stop_grace_period and systemd TimeoutStopSec are 30 s).
WORKER_SHUTDOWN_GRACE_SECONDS = env.float("WORKER_SHUTDOWN_GRACE_SECONDS", default=15.0)
CELERY_RESULT_EXPIRES = 3600
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Route by module: every task in an app's tasks module goes to that app's queue unless it says otherwise.
CELERY_TASK_ROUTES = {
    "signals.tasks.*": {"queue": "scan"},
    "trading.tasks.*": {"queue": "trade"},
    "trading.tasks_live.*": {"queue": "trade"},
    "telegram_bridge.tasks.*": {"queue": "telegram"},
}
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "analytics.tasks.heartbeat", "schedule": 60.0, "options": {"queue": "default"}},
    "watchdog": {"task": "analytics.tasks.watchdog", "schedule": 60.0, "options": {"queue": "default"}},
    "live-admin-health": {
        "task": "web.live_updates.push_admin_health",
        "schedule": 15.0,
        "options": {"queue": "default"},
    },
    # analytics: freeze the day's analytics (and fail backtests whose worker died) shortly before midnight UTC
    "analytics-snapshot": {
        "task": "analytics.tasks.analytics_snapshot",
        "schedule": crontab(hour=23, minute=55),
        "options": {"queue": "default"},
    },
    # signals: scan at every 15m candle close (batches start SIGNAL_SCAN_DELAY_SECONDS later), follow open signals
    "scan-markets": {
        "task": "signals.tasks.scan_markets",
        "schedule": crontab(minute="*/15"),
        "options": {"queue": "scan"},
    },
    "track-signal-outcomes": {
        "task": "signals.tasks.track_signal_outcomes",
        "schedule": 60.0,
        "options": {"queue": "scan"},
    },
    # the database is the source of truth, the queue only a doorbell: announce again signals that were never dispatched
    # or that a consumer never fanned out (SignalFanout), within seconds
    "publish-pending-signals": {
        "task": "signals.tasks.publish_pending_signals",
        "schedule": 10.0,
        "options": {"queue": "scan", "expires": 9},
    },
    # domain events: dispatch again the published events still in the outbox (config/events.py) after their grace period
    "events-outbox-sweep": {
        "task": "config.tasks.events_outbox_sweep",
        "schedule": 15.0,
        "options": {"queue": "default", "expires": 14},
    },
    # news: poll CryptoNews (or the recorded stand-in) every minute; funding rates of the scanned perpetuals
    "poll-news": {"task": "news.tasks.poll_news", "schedule": 60.0, "options": {"queue": "default"}},
    "poll-funding-rates": {
        "task": "news.tasks.poll_funding_rates",
        "schedule": crontab(minute="*/5"),
        "options": {"queue": "default"},
    },
    # spot order flow: score the closed minute's windows (signals/tasks_flow.py); expires before the next run
    "flow-monitor": {
        "task": "signals.tasks_flow.flow_monitor_cycle",
        "schedule": crontab(minute="*"),
        "options": {"queue": "scan", "expires": 50},
    },
    # live trading: compare exchange orders/positions with the database and repair (also runs at worker start)
    "reconcile-live-positions": {
        "task": "trading.tasks_live.reconcile_exchange_positions",
        "schedule": 180.0,
        "options": {"queue": "trade", "expires": 170},
    },
    # position monitor: closed candles -> exits of every open position, then the funding times now due; and the
    # fresh last prices (the 30 s price cache) as ticks between candles
    "monitor-positions": {
        "task": "trading.tasks.monitor_positions",
        "schedule": 60.0,
        "options": {"queue": "trade", "expires": 55},
    },
    "monitor-position-prices": {
        "task": "trading.tasks.monitor_position_prices",
        "schedule": 30.0,
        "options": {"queue": "trade", "expires": 25},
    },
    # execution intents not decided by their due time (task lost with Redis, worker killed, database down): queued again
    "execution-intents-sweep": {
        "task": "trading.tasks.execution_intents_sweep",
        "schedule": 10.0,
        "options": {"queue": "trade", "expires": 9},
    },
    # telegram: re-send deliveries left pending (task lost) or claimed by a dead worker; prune the update-id table nightly
    "telegram-resend-stale": {
        "task": "telegram_bridge.tasks.deliveries_resend_stale",
        "schedule": 10.0,
        "options": {"queue": "telegram", "expires": 9},
    },
    "telegram-updates-prune": {
        "task": "telegram_bridge.tasks.telegram_updates_prune",
        "schedule": crontab(hour=3, minute=17),
        "options": {"queue": "telegram"},
    },
    # webhooks answer once the delivery is stored; these process what was stored but never queued (or lost a worker)
    "telegram-updates-process-stale": {
        "task": "telegram_bridge.tasks.telegram_updates_process_stale",
        "schedule": 60.0,
        "options": {"queue": "telegram", "expires": 55},
    },
    "webhook-events-process-stale": {
        "task": "accounts.tasks.webhook_events_process_stale",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 55},
    },
    # subscriptions: reminders before a plan ends, downgrade at its end, expiry of unpaid Solana Pay requests
    "subscriptions-lifecycle": {
        "task": "accounts.tasks.subscriptions_lifecycle",
        "schedule": crontab(minute="*/10"),
        "options": {"queue": "default", "expires": 540},
    },
}

# Deadlines of the sweepers above (seconds). Work not done by its deadline is queued again; each further re-queue
# waits as long as the work has already waited (doubling), at most REQUEUE_BACKOFF_MAX_SECONDS, so a long backlog is
# not re-queued on every sweep. A started execution counts as due again TRADE_INTENT_LEASE_SECONDS after its start.
SIGNAL_FANOUT_DEADLINE_SECONDS = env.int("SIGNAL_FANOUT_DEADLINE_SECONDS", default=20)
TRADE_INTENT_DEADLINE_SECONDS = env.int("TRADE_INTENT_DEADLINE_SECONDS", default=20)
TRADE_INTENT_LEASE_SECONDS = env.int("TRADE_INTENT_LEASE_SECONDS", default=40)
TELEGRAM_DELIVERY_DEADLINE_SECONDS = env.int("TELEGRAM_DELIVERY_DEADLINE_SECONDS", default=20)
REQUEUE_BACKOFF_MAX_SECONDS = env.int("REQUEUE_BACKOFF_MAX_SECONDS", default=60)
# Domain-event outbox (config/events.py): a published event still stored this many seconds after its publish (process
# died before its on-commit dispatch, or the broker was down) is dispatched by the outbox sweeper, this many at a time.
EVENT_OUTBOX_GRACE_SECONDS = env.int("EVENT_OUTBOX_GRACE_SECONDS", default=30)
EVENT_OUTBOX_BATCH_SIZE = env.int("EVENT_OUTBOX_BATCH_SIZE", default=200)

# --- Domain events --------------------------------------------------------------------------------------------------
# event name -> Celery task names that consume it (see config/events.py). Apps subscribe here, not by importing
# each other's tasks.
DOMAIN_EVENT_CONSUMERS: dict[str, list[str]] = {
    # payload: signal_id
    "signal.created": [
        "telegram_bridge.tasks.broadcast_signal",
        "trading.tasks.execute_signal",
        "web.live_updates.push_signal",
    ],
    # payload: signal_id (outcome, outcome_pnl_pct are on the row)
    "signal.closed": ["telegram_bridge.tasks.announce_signal_outcome", "web.live_updates.push_signal"],
    # payload: position_id
    "position.opened": ["telegram_bridge.tasks.notify_position", "web.live_updates.push_position"],
    "position.updated": ["telegram_bridge.tasks.notify_position", "web.live_updates.push_position"],
    "position.closed": ["telegram_bridge.tasks.notify_position", "web.live_updates.push_position"],
    # payload: user_id, text (already escaped HTML), dedupe_key
    "user.notify": ["telegram_bridge.tasks.notify_user"],
    # payload: text (already escaped HTML), dedupe_key
    "admins.notify": ["accounts.tasks.admins_notify"],
    # payload: event_id (a stored payment-provider delivery; its sweeper re-queues it)
    "payment.received": ["accounts.tasks.webhook_event_process"],
    # payload: run_id (a pending BacktestRun)
    "backtest.requested": ["analytics.tasks.backtest_run"],
    # payload: broadcast_id, text (an operator's broadcast to every active user)
    "broadcast.requested": ["analytics.tasks.broadcast_fanout"],
    # payload: run_id (status succeeded or failed)
    "backtest.finished": ["telegram_bridge.tasks.backtest_report_send"],
    # payload: broadcast_id, queued, total, done
    "broadcast.progress": ["web.live_updates.push_broadcast_progress"],
    # payload: user_id (TelegramUser pk); the user's open WebSockets are closed
    "user.banned": ["web.live_updates.sockets_close_banned"],
}

# Consumers of signal.created that store per-user rows for it (one delivery row per recipient; one execution intent
# per user) and record their fan-out (signals.SignalFanout); a signal is done when all of them have, and until then
# signals.services.signal_publish_pending announces it to the missing ones again. (The live push is best effort.)
SIGNAL_FANOUT_CONSUMERS = ["telegram_bridge.tasks.broadcast_signal", "trading.tasks.execute_signal"]

# --- Auth, i18n, static -------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["config.formats"]  # dates as 2024-01-31 14:05 (config/formats/en/formats.py)
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
LOGIN_URL = "/admin/login/"
# Login throttling and lockout (accounts/login_throttle.py, counted in the shared cache): failed password logins per
# username and per client within the window lock that username / client out; failed one-time-link and Telegram
# login attempts per client likewise (HTTP 429).
AUTHENTICATION_BACKENDS = ["accounts.login_throttle.LoginLockoutBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LINK_ATTEMPT_LIMIT = env.int("LOGIN_LINK_ATTEMPT_LIMIT", default=10)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
# Reverse proxies in front of the web process that append the client address to X-Forwarded-For (0: use the peer
# address). Set it to the real number, or a client could pick its own address for the login throttling.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- Security (production) ----------------------------------------------------------------------------------------
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy of every response (config/security.py): scripts only from this site (no inline scripts
# anywhere: the dashboard, the admin and Swagger UI load theirs from /static/) plus Telegram's Login Widget; inline
# styles allowed (they cannot run code); the live-updates socket of the request's host is added to connect-src.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'", "https://telegram.org"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-src": ["https://oauth.telegram.org"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'self'"],
    "object-src": ["'none'"],
}
CONTENT_SECURITY_POLICY_REPORT_ONLY = env.bool("CONTENT_SECURITY_POLICY_REPORT_ONLY", default=False)
# Origins (scheme://host[:port]) whose pages may open the live-updates WebSocket, besides CSRF_TRUSTED_ORIGINS, the
# origin of WEB_BASE_URL, the hosts in ALLOWED_HOSTS and the request's own host (config/security.py).
WEB_ALLOWED_ORIGINS = env.list("WEB_ALLOWED_ORIGINS", default=[])

# --- REST API -----------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Perps Signals API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs pages load Swagger UI / Redoc from drf-spectacular-sidecar's static files instead of a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Channels -----------------------------------------------------------------------------------------------------
if REDIS_URL:
    # redis-py 8 reads with a 5 s socket timeout by default, the same as channels-redis' 5 s BZPOPMIN: give reads room.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30, "max_connections": 1000}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Web dashboard -----------------------------------------------------------------------------------------------
WEB_BASE_URL = env.str("WEB_BASE_URL", default="")  # absolute base of the bot's one-time dashboard login links
WEB_LOGIN_LINK_TTL_SECONDS = env.int("WEB_LOGIN_LINK_TTL_SECONDS", default=600)  # a login link works once, this long
# The Telegram Login Widget on the login page (shown only with a bot username); its data is accepted this long.
TELEGRAM_BOT_USERNAME = env.str("TELEGRAM_BOT_USERNAME", default="")
TELEGRAM_LOGIN_MAX_AGE_SECONDS = env.int("TELEGRAM_LOGIN_MAX_AGE_SECONDS", default=86_400)
LIVE_FALLBACK_REFRESH_SECONDS = env.int(
    "LIVE_FALLBACK_REFRESH_SECONDS", default=30
)  # page refresh while the socket is down

# --- Live trading (exchanges/, trading/executors/live.py, trading/reconcile.py) -----------------------------------
# "real", or the dotted path of a client factory (tests and the demo: testsupport.exchanges.fake.fake_exchange_client);
# anything else stops start-up (exchanges.clients resolves the path with import_string)
LIVE_EXCHANGE_CLIENT = env.str("LIVE_EXCHANGE_CLIENT", default="real")
if LIVE_EXCHANGE_CLIENT != "real" and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", LIVE_EXCHANGE_CLIENT):
    raise ImproperlyConfigured(
        f"LIVE_EXCHANGE_CLIENT={LIVE_EXCHANGE_CLIENT!r} is not a valid value; allowed: real, or the dotted path of a client factory."
    )
BITUNIX_BASE_URL = env.str("BITUNIX_BASE_URL", default="https://fapi.bitunix.com")
LIVE_HTTP_TIMEOUT_SECONDS = env.float("LIVE_HTTP_TIMEOUT_SECONDS", default=10.0)
LIVE_FILL_POLL_ATTEMPTS = env.int("LIVE_FILL_POLL_ATTEMPTS", default=5)  # polls for a market order's fill
LIVE_TP1_CLOSE_FRACTION = env.str("LIVE_TP1_CLOSE_FRACTION", default="0.5")  # share closed at TP1
# An order still "submitted" this long after placement is looked up on the exchange by its client order id.
LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS = env.int("LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS", default=120)
# Entry order of a live position: "market", or "limit" at the signal's entry price (rounded to the market's tick);
# a limit entry still unfilled this long after it was stored is cancelled (a partly filled one keeps what filled).
LIVE_ENTRY_ORDER_TYPE = env_choice("LIVE_ENTRY_ORDER_TYPE", default="market", allowed=("market", "limit"))
LIVE_LIMIT_ENTRY_TIMEOUT_SECONDS = env.int("LIVE_LIMIT_ENTRY_TIMEOUT_SECONDS", default=300)

# --- External systems (each behind one port; see README "Configuration") ------------------------------------------
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_API_BASE = env.str("TELEGRAM_API_BASE", default="")  # e.g. http://127.0.0.1:8081 for the local Bot API server
TELEGRAM_WEBHOOK_SECRET = env.str("TELEGRAM_WEBHOOK_SECRET", default="")
TELEGRAM_CHANNEL_ID = env.str("TELEGRAM_CHANNEL_ID", default="")
ADMIN_TELEGRAM_IDS = [int(x) for x in env.list("ADMIN_TELEGRAM_IDS", default=[])]
# Telegram sender limits (token buckets shared across workers in Redis; Telegram publishes no exact numbers).
TELEGRAM_RATE_GLOBAL_PER_SECOND = env.float("TELEGRAM_RATE_GLOBAL_PER_SECOND", default=30.0)
TELEGRAM_RATE_CHAT_PER_SECOND = env.float("TELEGRAM_RATE_CHAT_PER_SECOND", default=1.0)
TELEGRAM_RATE_GROUP_PER_MINUTE = env.float("TELEGRAM_RATE_GROUP_PER_MINUTE", default=20.0)
TELEGRAM_BROADCAST_CHUNK_SIZE = env.int("TELEGRAM_BROADCAST_CHUNK_SIZE", default=500)
# Polling bridge (telegram_bridge/dispatch.py): users handled at once (each user's updates in order), and the time an
# update may take before it is stopped and the user is told so.
TELEGRAM_BRIDGE_CONCURRENCY = env.int("TELEGRAM_BRIDGE_CONCURRENCY", default=8)
TELEGRAM_HANDLER_TIME_LIMIT_SECONDS = env.float("TELEGRAM_HANDLER_TIME_LIMIT_SECONDS", default=20.0)
CRYPTONEWS_API_KEY = env.str("CRYPTONEWS_API_KEY", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
WHOP_WEBHOOK_SECRET = env.str("WHOP_WEBHOOK_SECRET", default="")
HELIUS_AUTH_TOKEN = env.str("HELIUS_AUTH_TOKEN", default="")
# Subscriptions (accounts/subscriptions.py, accounts/entitlements.py): Whop checkouts and Solana Pay requests
WHOP_API_KEY = env.str("WHOP_API_KEY", default="")  # creates checkouts carrying the buyer's Telegram id
WHOP_API_BASE = env.str("WHOP_API_BASE", default="https://api.whop.com/api/v1")
SOLANA_MERCHANT_WALLET = env.str("SOLANA_MERCHANT_WALLET", default="")  # base58 address Solana payments must reach
SOLANA_PAY_LABEL = env.str("SOLANA_PAY_LABEL", default="Perps Signals")  # shown by the wallet
SOLANA_PAYMENT_TTL_MINUTES = env.int("SOLANA_PAYMENT_TTL_MINUTES", default=30)  # a transfer request expires after
SUBSCRIPTION_REMINDER_DAYS = env.int("SUBSCRIPTION_REMINDER_DAYS", default=3)  # reminder before a plan ends
SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS = env.int("SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS", default=3)

MARKET_DATA_SOURCE = env_choice("MARKET_DATA_SOURCE", default="replay", allowed=("replay", "live"))
MARKET_DATA_EXCHANGE = env.str("MARKET_DATA_EXCHANGE", default="okx")
REPLAY_DATA_DIR = Path(env.str("REPLAY_DATA_DIR", default=str(BASE_DIR / "data")))
# The replay clock of the running processes: REPLAY_SPEED replay seconds per wall second (900: a 15m candle closes
# every second), from REPLAY_START (ISO UTC; default the first warmed-up candle). 0: the clock moves only when a
# command moves it (the test suite). `manage.py replay` and `manage.py demo` always walk a clock of their own.
REPLAY_SPEED = env.float("REPLAY_SPEED", default=0.0 if DJANGO_ENV == "test" else 900.0)
if not 0 <= REPLAY_SPEED <= 900:
    raise ImproperlyConfigured(
        f"REPLAY_SPEED={REPLAY_SPEED:g}: it must be between 0 (stopped) and 900 "
        "(one 15m candle per second; faster would outrun the one-second beat)"
    )
REPLAY_START = env.str("REPLAY_START", default="")
# The jobs that follow the market clock run at their market-time cadence on a running replay clock (e.g. the scan every
# 900 market seconds = every second at REPLAY_SPEED=900), never more often than once a second.
REPLAY_MARKET_JOBS = {
    "scan-markets": 900,
    "track-signal-outcomes": 60,
    "poll-news": 60,
    "poll-funding-rates": 300,
    "flow-monitor": 60,
    "monitor-positions": 60,
    "monitor-position-prices": 30,
}
if MARKET_DATA_SOURCE == "replay" and REPLAY_SPEED > 0:
    for _job, _market_seconds in REPLAY_MARKET_JOBS.items():
        _interval = max(1.0, _market_seconds / REPLAY_SPEED)
        _entry = CELERY_BEAT_SCHEDULE[_job]
        CELERY_BEAT_SCHEDULE[_job] = {
            **_entry,
            "schedule": _interval,
            "options": {**_entry.get("options", {}), "expires": max(5.0, 3 * _interval)},
        }
# Signals scan and outcome tracking (signals app)
SIGNAL_SCAN_BATCH_SIZE = env.int("SIGNAL_SCAN_BATCH_SIZE", default=25)  # symbols per scan_batch task
SIGNAL_SCAN_DELAY_SECONDS = env.int("SIGNAL_SCAN_DELAY_SECONDS", default=5)  # after the candle close
SIGNAL_EXPIRY_HOURS = env.int("SIGNAL_EXPIRY_HOURS", default=24)
SIGNAL_TRACK_TIMEFRAME = env.str("SIGNAL_TRACK_TIMEFRAME", default="5m")  # candles the outcome tracker follows
SIGNAL_STRATEGY_PARAMS: dict = {}  # overrides of engine.strategy.StrategyParams defaults
# Candles fetched per symbol and scan; 0 = what the strategy needs (15m: twice its warm-up, 1h: its warm-up).
SIGNAL_SCAN_CANDLES_15M = env.int("SIGNAL_SCAN_CANDLES_15M", default=0)
SIGNAL_SCAN_CANDLES_1H = env.int("SIGNAL_SCAN_CANDLES_1H", default=0)

# --- Trading defaults ---------------------------------------------------------------------------------------------
MAX_LEVERAGE = env.int("MAX_LEVERAGE", default=20)
PAPER_STARTING_BALANCE = Decimal(env.str("PAPER_STARTING_BALANCE", default="10000"))
# Paper fills: taker fee for market entries and stop/expiry exits (with slippage), maker fee for take-profit exits.
PAPER_TAKER_FEE = Decimal(env.str("PAPER_TAKER_FEE", default="0.0005"))
PAPER_MAKER_FEE = Decimal(env.str("PAPER_MAKER_FEE", default="0.0002"))
PAPER_SLIPPAGE = Decimal(env.str("PAPER_SLIPPAGE", default="0.0005"))  # fraction of the price, against the trader
# Funding rate per 8 h charged to paper positions in replay when no FundingSnapshot exists ("" = none).
PAPER_FUNDING_RATE = env.str("PAPER_FUNDING_RATE", default="0.0001")
# Exit rules of the position monitor (engine.exits.ExitRules); trailing applies to users with trailing_stop on.
TRADING_TP1_CLOSE_FRACTION = env.float("TRADING_TP1_CLOSE_FRACTION", default=0.5)
TRADING_TRAILING_MODE = env_choice("TRADING_TRAILING_MODE", default="atr", allowed=("atr", "pct"))
TRADING_TRAILING_ATR_MULT = env.float("TRADING_TRAILING_ATR_MULT", default=1.0)
TRADING_TRAILING_PCT = env.float("TRADING_TRAILING_PCT", default=0.01)
TRADING_TRAILING_ACTIVATION_R = env.float("TRADING_TRAILING_ACTIVATION_R", default=1.0)
TRADING_POSITION_EXPIRY_HOURS = env.int("TRADING_POSITION_EXPIRY_HOURS", default=24)  # when the signal has none
TRADING_MONITOR_TIMEFRAME = env.str("TRADING_MONITOR_TIMEFRAME", default="5m")
TRADING_MONITOR_CANDLES = env.int("TRADING_MONITOR_CANDLES", default=300)
HEARTBEAT_MAX_AGE_SECONDS = env.int("HEARTBEAT_MAX_AGE_SECONDS", default=180)
# Watchdog (analytics/watchdog.py, beat every minute): a scan must start every 15 min (0 disables the scan check).
WATCHDOG_SCAN_MAX_AGE_SECONDS = env.int("WATCHDOG_SCAN_MAX_AGE_SECONDS", default=20 * 60)
WATCHDOG_SCAN_STUCK_SECONDS = env.int("WATCHDOG_SCAN_STUCK_SECONDS", default=10 * 60)
WATCHDOG_REQUEUE_COOLDOWN_SECONDS = env.int("WATCHDOG_REQUEUE_COOLDOWN_SECONDS", default=5 * 60)
# Central error handler: alert admins in Telegram once a kind of error reaches this count in a UTC day, at most once
# per interval.
ERROR_ALERT_THRESHOLD = env.int("ERROR_ALERT_THRESHOLD", default=5)
ERROR_ALERT_INTERVAL_SECONDS = env.int("ERROR_ALERT_INTERVAL_SECONDS", default=3600)

# --- News signals and the funding-rate monitor (news/, signals/funding.py) -----------------------------------------
# News source: cryptonews (needs CRYPTONEWS_API_KEY) or recorded (articles from NEWS_RECORDED_FILE, offline demo).
NEWS_SOURCE = env_choice(
    "NEWS_SOURCE", default="cryptonews" if CRYPTONEWS_API_KEY else "recorded", allowed=("cryptonews", "recorded")
)
NEWS_RECORDED_FILE = Path(env.str("NEWS_RECORDED_FILE", default=str(BASE_DIR / "news" / "fixtures" / "demo_news.json")))
NEWS_POLL_WINDOW = env.str("NEWS_POLL_WINDOW", default="last15min")  # CryptoNews date filter of each poll
NEWS_MAX_PAGES = env.int("NEWS_MAX_PAGES", default=1)  # pages of 50 rank-sorted articles per poll
NEWS_MAX_AGE_MINUTES = env.int("NEWS_MAX_AGE_MINUTES", default=30)  # fresher than this to become a signal
NEWS_TOP_RANK_POSITIONS = env.int("NEWS_TOP_RANK_POSITIONS", default=10)  # among the N most important of a poll
NEWS_MIN_CONFIDENCE = env.float("NEWS_MIN_CONFIDENCE", default=0.6)  # sentiment confidence 0..1
NEWS_MAX_MOVE_ATR = env.float("NEWS_MAX_MOVE_ATR", default=1.0)  # skip when |price change since publication| >= x ATR
NEWS_SIGNAL_EXPIRY_HOURS = env.int("NEWS_SIGNAL_EXPIRY_HOURS", default=4)
NEWS_SENTIMENT_MAX_ATTEMPTS = env.int("NEWS_SENTIMENT_MAX_ATTEMPTS", default=3)
NEWS_OPENAI_TIMEOUT_SECONDS = env.float("NEWS_OPENAI_TIMEOUT_SECONDS", default=15.0)
NEWS_OPENAI_MAX_TOKENS = env.int("NEWS_OPENAI_MAX_TOKENS", default=300)
# Funding: exchanges polled live (ccxt ids; replay mode reads REPLAY_DATA_DIR instead), alert thresholds per 8 h.
FUNDING_EXCHANGES = env.list("FUNDING_EXCHANGES", default=["okx", "kucoinfutures", "mexc", "bitunix"])
FUNDING_ALERT_THRESHOLD = Decimal(env.str("FUNDING_ALERT_THRESHOLD", default="0.001"))  # |rate| >= 0.1 % per 8 h
FUNDING_ARBITRAGE_MIN_SPREAD = Decimal(env.str("FUNDING_ARBITRAGE_MIN_SPREAD", default="0.0005"))  # 0.05 %/8 h

# --- Spot order-flow monitor (signals/flow_monitor.py, signals/flow_sources.py) -------------------------------------
# Source: live (spot trades + books of FLOW_EXCHANGES through ccxt), recorded (the several venues' trade tapes bundled
# with the replay data, data/flow/; the default in replay mode) or replay (pressure estimated from the bundled candles,
# a documented one-venue proxy). Symbols are spot pairs; signals go to their USDT perpetual (BTC/USDT -> BTC/USDT:USDT).
FLOW_SOURCE = env_choice(
    "FLOW_SOURCE",
    default="live" if MARKET_DATA_SOURCE == "live" else "recorded",
    allowed=("live", "recorded", "replay"),
)
FLOW_EXCHANGES = env.list("FLOW_EXCHANGES", default=["binance", "okx", "bybit", "kucoin", "mexc"])
FLOW_SYMBOLS = env.list("FLOW_SYMBOLS", default=["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT"])
FLOW_WINDOWS = env.list("FLOW_WINDOWS", default=["1m", "5m", "15m"])
FLOW_TRADES_LIMIT = env.int("FLOW_TRADES_LIMIT", default=1000)  # recent trades per exchange and symbol per cycle
FLOW_FETCH_TIMEOUT_SECONDS = env.float("FLOW_FETCH_TIMEOUT_SECONDS", default=10.0)
FLOW_BOOK_DEPTH_PCT = env.float("FLOW_BOOK_DEPTH_PCT", default=0.5)  # book imbalance within x % of the mid
FLOW_TAKER_WEIGHT = env.float("FLOW_TAKER_WEIGHT", default=0.7)  # taker flow vs book imbalance
FLOW_THRESHOLD = env.float("FLOW_THRESHOLD", default=0.35)  # |pressure| that counts as extreme
FLOW_MIN_AGREEING = env.float("FLOW_MIN_AGREEING", default=0.6)  # share of exchanges pushing the same way
FLOW_STABLE_WINDOWS = env.int("FLOW_STABLE_WINDOWS", default=3)  # consecutive extreme windows before an alert
FLOW_COOLDOWN_MINUTES = env.int("FLOW_COOLDOWN_MINUTES", default=30)  # per symbol
FLOW_SIGNAL_EXPIRY_HOURS = env.int("FLOW_SIGNAL_EXPIRY_HOURS", default=2)

# --- Logging ------------------------------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", default="INFO", allowed=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOG_FORMAT = env_choice("LOG_FORMAT", default="json" if IS_PRODUCTION else "text", allowed=("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "config.observability.ContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s task=%(task_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(task_id)s %(message)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
