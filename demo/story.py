"""What the demo's users do and what the other beat jobs do on the demo's replay clock.

Every user action goes through the bot as a real user's would: the local Bot API server receives the message or the
button press, the bridge's poller hands it to Django (aiogram → HTTP → ``run_bridge``'s code path). A user who needs a
plan (live trading, trading news and order-flow signals, more open positions) buys it through the bot first
(``demo.subscribe.demo_subscribe_through_bot``: /subscribe, Solana Pay, the payment webhook from the stand-in).

The beat jobs that follow the market clock run as the beat would run them, once per replay step (15 minutes): the
position monitor and funding charges, the live reconcile against the local Bitunix stand-in, news polls (window of
the step), funding polls (hourly), and the order-flow monitor — every minute wherever the bundled tapes have trades
(the monitor's 1-minute windows need consecutive minutes, as in production), once per step elsewhere.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

from accounts.models import TelegramUser
from demo.subscribe import demo_subscribe_through_bot
from news.tasks import poll_funding_rates, poll_news
from signals.flow_monitor import FlowMonitorParams, flow_cycle
from signals.flow_sources import flow_source_from_settings
from signals.market_data import get_market_data
from telegram_bridge.bridge import polling_run
from trading.ledger import funding_charge_due
from trading.models import Position
from trading.monitor import positions_monitor
from trading.reconcile import reconcile_all

logger = logging.getLogger(__name__)

MINUTE_MS = 60_000
STEP_MS = 15 * MINUTE_MS
LIVE_SYMBOL = "XRP/USDT:USDT"


@dataclass(frozen=True)
class DemoUser:
    telegram_id: int
    username: str
    # what the user does in /settings: ("number", name, value) | ("toggle", name) | ("level", risk level) |
    # ("choice", name, wanted value) | ("command", text)
    settings_actions: tuple = ()
    trades: bool = True  # switches auto-trading on with /autotrade on
    plan: bool = False  # buys the Pro plan through the bot before anything else
    admin: bool = False  # listed in ADMIN_TELEGRAM_IDS (configuration, not a database flag)

    @property
    def first_name(self) -> str:
        return self.username.split("_")[0].title()


DEMO_USERS = (
    # an active trader: 3x, 5% of balance per trade, every risk level, flips on strong order flow
    DemoUser(
        900001,
        "alice_demo",
        (
            ("number", "leverage", "3"),
            ("number", "position_size_pct", "5"),
            ("number", "max_open_positions", "4"),
            ("level", "high"),
            ("toggle", "auto_flip"),
        ),
        plan=True,
    ),
    # a careful one: 2x, sizes by risk to the stop, low/medium risk only, mutes NXT, stops at a 1% drawdown
    DemoUser(
        900002,
        "bob_demo",
        (
            ("number", "leverage", "2"),
            ("choice", "sizing_mode", "risk"),
            ("number", "risk_per_trade_pct", "1"),
            ("number", "max_open_positions", "2"),
            ("command", "/mute NXT"),
            ("number", "daily_loss_limit_pct", "3"),
            ("number", "max_drawdown_pct", "1"),
        ),
    ),
    # the operator: receives signals and funding alerts, runs a backtest from the bot, does not trade
    DemoUser(900003, "ops_demo", (("toggle", "funding_alerts"),), trades=False, admin=True),
)
# joins when the perpetual's data starts and trades live on the local Bitunix stand-in
LIVE_USER = DemoUser(900004, "carol_demo", (("level", "high"), ("number", "position_size_pct", "10")), plan=True)


class BotUsers:
    """The demo users talking to the bot through the local Bot API server."""

    def __init__(self, bot_api):
        self.bot_api = bot_api
        self.resumes = 0
        self.subscriptions = []

    def say(self, demo: DemoUser, *texts: str) -> None:
        for text in texts:
            self.bot_api.inject_message(
                user_id=demo.telegram_id, text=text, username=demo.username, first_name=demo.first_name
            )
            polling_run(timeout=1, max_updates=1)

    def press(self, demo: DemoUser, data: str) -> None:
        self.bot_api.inject_callback(
            user_id=demo.telegram_id, data=data, username=demo.username, first_name=demo.first_name
        )
        polling_run(timeout=1, max_updates=1)

    def last_answer(self, demo: DemoUser) -> str:
        sent = self.bot_api.sent_messages(demo.telegram_id)
        return re.sub(r"<[^>]+>", "", sent[-1].get("text") or sent[-1].get("caption") or "") if sent else ""

    def register(self, demo: DemoUser) -> TelegramUser:
        """/start (with the plan bought through the bot for a user who needs one), the user's /settings choices,
        then /autotrade on, each through the bot."""
        if demo.plan:
            self.subscriptions.append(
                demo_subscribe_through_bot(self.bot_api, telegram_id=demo.telegram_id, name=demo.username)
            )
        else:
            self.say(demo, "/start")
        user = TelegramUser.objects.get(telegram_id=demo.telegram_id)
        for action in demo.settings_actions:
            kind, name, *value = action
            if kind == "number":
                self.press(demo, f"s:i:{name}")
                self.say(demo, value[0])
            elif kind == "toggle":
                self.press(demo, f"s:t:{name}")
            elif kind == "level":
                self.press(demo, f"s:r:{name}")
            elif kind == "choice":
                for _ in range(5):
                    user.preferences.refresh_from_db()
                    if getattr(user.preferences, name) == value[0]:
                        break
                    self.press(demo, f"s:c:{name}")
            elif kind == "command":
                self.say(demo, name)
        if demo.trades:
            self.say(demo, "/autotrade on")
        user.refresh_from_db()
        return user

    def connect_bitunix(self, demo: DemoUser, *, api_key: str, secret: str) -> str:
        """/connect → Bitunix → key → secret (each key message is deleted by the bot), then live mode."""
        self.say(demo, "/connect")
        self.press(demo, "cx:bitunix")
        self.say(demo, api_key, secret)
        connected = self.last_answer(demo)
        self.say(demo, "/toggle_paper_mode")
        return connected

    def resume_if_paused(self, demos) -> list[str]:
        """A user whose auto-trading was paused (drawdown, daily loss) reads the notice and sends /resume."""
        answers = []
        for demo in demos:
            user = TelegramUser.objects.filter(telegram_id=demo.telegram_id).first()
            if user is not None and user.auto_trading_paused_reason:
                self.say(demo, "/resume")
                answer = self.last_answer(demo)
                if "resumed" in answer.lower():
                    self.resumes += 1
                    answers.append(f"@{demo.username}: {answer.splitlines()[0]}")
        return answers


@dataclass
class Feeds:
    """The other beat jobs on the replay clock (see the module docstring)."""

    steps: int = 0
    flow_cycles: int = 0
    news_polls: int = 0
    funding_polls: int = 0
    failures: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.flow_source = flow_source_from_settings()
        self.flow_params = FlowMonitorParams.from_settings()

    def _run(self, name: str, job: Callable[[], object]) -> object | None:
        try:
            return job()
        except Exception as error:  # one feed failing must not stop the replay; counted and shown
            logger.warning("demo feed %s failed", name, exc_info=True)
            self.failures[f"{name}: {type(error).__name__}"] += 1
            return None

    def advance(self, now_ms: int) -> None:
        market_data = get_market_data()  # the replay window's clock
        self.steps += 1
        covers = getattr(self.flow_source, "covers", None)
        minutes = (
            range(now_ms - STEP_MS + MINUTE_MS, now_ms + 1, MINUTE_MS)
            if covers and covers(start_ms=now_ms - STEP_MS - self.flow_params.lookback_ms, end_ms=now_ms)
            else [now_ms]
        )
        for minute in minutes:
            self.flow_cycles += 1
            self._run(
                "flow",
                lambda minute=minute: flow_cycle(
                    now_ms=minute, source=self.flow_source, params=self.flow_params, market_data=market_data
                ),
            )
        self.news_polls += 1
        self._run("news", poll_news)  # NEWS_POLL_WINDOW (15 minutes) = one step: every article is fetched once
        if self.steps % 4 == 0:
            self.funding_polls += 1
            self._run("funding", poll_funding_rates)


class PositionWatch:
    """After every step: closed candles to the open paper positions, due funding, and the live positions' exchange."""

    def __init__(self, bitunix=None):
        self.candles = self.funding = self.reconciles = 0
        self.bitunix = bitunix
        self._price_fed_ms: int | None = None

    def advance(self, market_data, now_ms: int) -> None:
        self._feed_exchange_prices(market_data, now_ms)
        if Position.objects.filter(status=Position.Status.OPEN, mode="paper").exists():
            report = positions_monitor()
            self.candles += report.candles
            self.funding += funding_charge_due(now=market_data.now())
        if Position.objects.filter(mode="live", status__in=(Position.Status.PENDING, Position.Status.OPEN)).exists():
            reconcile_all()
            self.reconciles += 1

    def _feed_exchange_prices(self, market_data, now_ms: int) -> None:
        """The stand-in exchange's price follows the replay's closed 5m candles (open → extremes → close), so its
        stop and take-profit orders trigger where the real market went."""
        if self.bitunix is None:
            return
        try:
            candles = market_data.ohlcv(LIVE_SYMBOL, "5m", 4)
        except Exception:
            return
        for ts, o, h, low, c in zip(candles.ts, candles.open, candles.high, candles.low, candles.close, strict=True):
            if self._price_fed_ms is not None and int(ts) <= self._price_fed_ms:
                continue
            path = (o, low, h, c) if c >= o else (o, h, low, c)
            for price in path:
                self.bitunix.account.set_price(LIVE_SYMBOL, f"{float(price):.4f}")
            self._price_fed_ms = int(ts)


def new_api_keys() -> tuple[str, str]:
    return f"BXdemo-{secrets.token_hex(8)}", f"BXsecret-{secrets.token_hex(16)}"


def is_perpetual_window(moment: datetime) -> bool:
    return moment >= datetime(2021, 1, 1, tzinfo=UTC)


def demo_settings_apply(*, bitunix_url: str) -> None:
    """The demo process's configuration: offline news (the recorded articles on the demo clock and the keyword
    sentiment model, whatever news or OpenAI keys the shell exports), the operator is an admin by
    ADMIN_TELEGRAM_IDS, live orders go to the local Bitunix stand-in over signed HTTP, and the local Bot API server
    gets a budget matching the replay's speed."""
    settings.NEWS_SOURCE = "recorded"
    settings.OPENAI_API_KEY = ""
    admins = [u.telegram_id for u in DEMO_USERS if u.admin]
    settings.ADMIN_TELEGRAM_IDS = sorted(set(settings.ADMIN_TELEGRAM_IDS) | set(admins))
    settings.LIVE_EXCHANGE_CLIENT = "real"
    settings.BITUNIX_BASE_URL = bitunix_url
    settings.LIVE_HTTP_TIMEOUT_SECONDS = 5.0
    settings.LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS = 0
    # The replay runs ~1000x faster than the wall clock; Telegram's per-chat limits are per wall-clock second.
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = settings.TELEGRAM_RATE_CHAT_PER_SECOND = 1000.0
