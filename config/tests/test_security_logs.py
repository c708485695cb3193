"""No secret in the logs: every log record of a full pipeline run — bot updates, webhooks (accepted and refused), an
exchange connected with API keys, a market scan whose signal is broadcast through the Bot API (token in every URL)
and paper-traded, an unhandled view error — is captured at DEBUG level from the root logger, formatted both as the
development text and the production JSON (extras and tracebacks included), and searched for every configured key.
"""

import io
import json
import logging
import time

import pytest
from django.conf import settings as django_settings

from config.observability import ContextFilter

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SECRETS = {
    "TELEGRAM_BOT_TOKEN": "7654321987:AAH-ops-secret-bot-token-Zq9xWv",
    "TELEGRAM_WEBHOOK_SECRET": "ops-telegram-webhook-secret-7Hq2",
    "WHOP_WEBHOOK_SECRET": "ops-whop-webhook-secret-Lk81Pz",
    "HELIUS_AUTH_TOKEN": "ops-helius-auth-token-Ww3e9R",
    "CRYPTONEWS_API_KEY": "ops-cryptonews-key-Yt5uN0",
}
EXCHANGE_KEY = "ops-exchange-api-key-Qa7sD4fG"
EXCHANGE_SECRET = "ops-exchange-api-secret-Jh6kL2pX"
EXCHANGE_PASSPHRASE = "ops-exchange-passphrase-Zm8n"
SCAN_AT_MS = 1_637_163_900_000  # a replay moment where a signal fires (see test_faults_redis)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.addFilter(ContextFilter())
        text = django_settings.LOGGING["formatters"]["text"]["format"]
        self.text = logging.Formatter(text)
        from pythonjsonlogger.json import JsonFormatter

        self.json = JsonFormatter(django_settings.LOGGING["formatters"]["json"]["fmt"])
        self.stream = io.StringIO()
        self.records = 0

    def emit(self, record):
        self.records += 1
        self.stream.write(self.text.format(record) + "\n")
        try:
            self.stream.write(self.json.format(record) + "\n")
        except Exception as exc:  # a record JSON cannot render is still searched through its text form
            self.stream.write(f"json-format-failed {exc!r} {record.__dict__!r}\n")


@pytest.fixture
def captured_logs():
    from config.events import task_modules_load

    task_modules_load()  # Celery's Django fixup re-runs django.setup() (dictConfig) on the first import: do it first
    root = logging.getLogger()
    handler, level = _Capture(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    quiet = {}
    for name in list(logging.root.manager.loggerDict):  # make every library log at DEBUG too
        logger = logging.getLogger(name)
        quiet[name] = logger.level
        logger.setLevel(logging.NOTSET)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, value in quiet.items():
            logging.getLogger(name).setLevel(value)


def _update(n: int, user_id: int, text: str) -> dict:
    return {
        "update_id": 70_000 + n,
        "message": {
            "message_id": n,
            "date": int(time.time()),
            "text": text,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Sec", "username": f"sec{user_id}"},
        },
    }


@pytest.mark.urls("config.tests.urls_boom")
def test_a_full_pipeline_run_logs_no_configured_secret(settings, transactional_db, redis_url, client, captured_logs):
    from accounts.payment_webhooks import standard_webhooks_sign
    from signals.market_data.replay import ReplayMarketData
    from signals.models import Signal
    from signals.scanning import scan_batch_run, scan_start
    from telegram_bridge.services import update_handle
    from testsupport.helius_recorded import signature_for
    from testsupport.telegram_bot_api import running_local_bot_api
    from trading.connect import exchange_connect
    from trading.models import Position

    for name, value in SECRETS.items():
        setattr(settings, name, value)
    settings.LIVE_EXCHANGE_CLIENT = "testsupport.exchanges.fake.fake_exchange_client"
    settings.ADMIN_TELEGRAM_IDS = []
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = settings.TELEGRAM_RATE_CHAT_PER_SECOND = 1000.0
    from django.core.cache import cache

    cache.clear()
    client.raise_request_exception = False
    with running_local_bot_api() as bot_api:
        assert SECRETS["TELEGRAM_BOT_TOKEN"] == settings.TELEGRAM_BOT_TOKEN
        # bot updates: a trader registers, asks for help; the bot answers through the Bot API (token in the URL)
        update_handle(_update(1, 7424201, "/start"))
        update_handle(_update(2, 7424201, "/help"))
        assert bot_api.sent_messages(7424201)
        from accounts.models import TelegramUser

        trader = TelegramUser.objects.get(telegram_id=7424201)
        trader.auto_trading_enabled = True
        trader.save(update_fields=["auto_trading_enabled"])
        # the Telegram webhook, with the right and a wrong secret
        body = json.dumps(_update(3, 7424201, "/status")).encode()
        assert (
            client.post(
                "/telegram/webhook",
                body,
                content_type="application/json",
                HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRETS["TELEGRAM_WEBHOOK_SECRET"],
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/telegram/webhook", body, content_type="application/json", HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="wrong"
            ).status_code
            == 401
        )
        # payment webhooks, accepted and refused
        helius = json.dumps(
            [{"signature": signature_for("ops-log-check"), "type": "TRANSFER", "nativeTransfers": []}]
        ).encode()
        assert (
            client.post(
                "/api/webhooks/helius/",
                helius,
                content_type="application/json",
                HTTP_AUTHORIZATION=SECRETS["HELIUS_AUTH_TOKEN"],
            ).status_code
            < 300
        )
        assert (
            client.post(
                "/api/webhooks/helius/", helius, content_type="application/json", HTTP_AUTHORIZATION="nope"
            ).status_code
            == 401
        )
        whop = json.dumps({"type": "membership.went_valid", "data": {"id": "mem_1"}}).encode()
        stamp = str(int(time.time()))
        signature = standard_webhooks_sign(
            secret=SECRETS["WHOP_WEBHOOK_SECRET"], msg_id="msg_1", timestamp=stamp, body=whop
        )
        client.post(
            "/api/webhooks/whop/",
            whop,
            content_type="application/json",
            HTTP_WEBHOOK_ID="msg_1",
            HTTP_WEBHOOK_TIMESTAMP=stamp,
            HTTP_WEBHOOK_SIGNATURE=signature,
        )
        # an exchange account connected with API keys (the local fake exchange)
        exchange_connect(
            user=trader, exchange="okx", api_key=EXCHANGE_KEY, secret=EXCHANGE_SECRET, passphrase=EXCHANGE_PASSPHRASE
        )
        # a market scan at a moment where a signal fires: broadcast through the Bot API, paper-traded
        market_data = ReplayMarketData()
        market_data.advance_to(SCAN_AT_MS)
        plan = scan_start(market_data=market_data, now_ms=SCAN_AT_MS)
        for symbols in plan.batches:
            scan_batch_run(scan_run_id=plan.scan_run_id, symbols=symbols, now_ms=SCAN_AT_MS, market_data=market_data)
        assert Signal.objects.exists()
        # an unhandled error in a view (trace logged for operators)
        assert client.get("/boom", HTTP_AUTHORIZATION=SECRETS["HELIUS_AUTH_TOKEN"]).status_code == 500

    logs = captured_logs.stream.getvalue()
    assert captured_logs.records > 20, "the run logged almost nothing: the capture is not working"
    for line in (
        "unhandled view error",
        "Traceback",
        "connected okx (key …",
        "executed: {'opened': 1",
        "deliveries_send",
        "webhook",
    ):
        assert line in logs, f"{line!r} missing: the capture did not see that stage"
    assert Position.objects.filter(user=trader).exists()
    leaked = [
        name
        for name, value in [
            *SECRETS.items(),
            ("exchange api key", EXCHANGE_KEY),
            ("exchange secret", EXCHANGE_SECRET),
            ("exchange passphrase", EXCHANGE_PASSPHRASE),
            ("SECRET_KEY", django_settings.SECRET_KEY),
            *[("FERNET_KEYS", key) for key in django_settings.FERNET_KEYS],
        ]
        if value in logs
    ]
    context = {
        name: logs[max(logs.find(value) - 400, 0) : logs.find(value) + 100]
        for name, value in [*SECRETS.items(), ("exchange api key", EXCHANGE_KEY)]
        if value in logs
    }
    assert leaked == [], f"secrets in the logs: {leaked}\n{context}"
