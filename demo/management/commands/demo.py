"""`make demo`: the whole pipeline offline on the embedded default, then the dashboard until Ctrl-C.

What runs is the production code path, only fed by the replay market data and a local Telegram Bot API server:
the replay clock advances over the bundled real candles; at each 15-minute step the scanner runs, every new signal
is published as ``signal.created`` and its consumers run (eagerly, there is no broker): the Telegram broadcast goes
through aiogram over HTTP to the local Bot API server, the paper executor opens positions for the demo users; the
position monitor and the funding charge then advance over the candles that closed, and the outcome tracker closes
signals. At the end the command prints the signals, the paper trades and a PnL table, then serves the ASGI app
(HTTP + WebSockets) with uvicorn unless ``--serve=0``.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from accounts.models import TelegramUser
from accounts.services import (
    preferences_update,
    telegram_user_register,
    telegram_user_web_user_set,
    telegram_users_admin_set,
)


@dataclass(frozen=True)
class DemoUser:
    telegram_id: int
    username: str
    preferences: dict
    is_admin: bool = False


DEMO_USERS = (
    # an active trader: 3x, 5% of balance per trade, every risk level
    DemoUser(900001, "alice_demo", {"leverage": 3, "position_size_pct": Decimal("5"), "max_open_positions": 4,
                                    "accepted_risk_levels": ["low", "medium", "high"], "trailing_stop": True}),
    # a careful one: 2x, sizes by risk to the stop, low/medium risk only, mutes NXT
    DemoUser(900002, "bob_demo", {"leverage": 2, "sizing_mode": "risk", "risk_per_trade_pct": Decimal("1"),
                                  "max_open_positions": 2, "accepted_risk_levels": ["low", "medium"],
                                  "muted_symbols": ["NXT/BTC"], "daily_loss_limit_pct": Decimal("3")}),
    # the operator: receives signals, does not trade
    DemoUser(900003, "ops_demo", {"dm_alerts": True}, is_admin=True),
)
WEB_USERNAME = "demo"


class Command(BaseCommand):
    help = "Replay the bundled candles through the whole pipeline, print signals, paper trades and PnL, then serve."

    def add_arguments(self, parser):
        parser.add_argument("--serve", type=int, default=1, help="1: serve the dashboard after the summary; 0: exit")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--quiet", action="store_true", help="print only the summary, not every signal card")

    def handle(self, *args, serve: int, port: int, quiet: bool, **options):
        if settings.MARKET_DATA_SOURCE != "replay":
            raise CommandError("The demo replays bundled candles: set MARKET_DATA_SOURCE=replay (the default).")
        if connection.vendor != "sqlite" or settings.DJANGO_ENV == "production":
            raise CommandError("The demo starts from an empty database: run it on the embedded SQLite default.")
        from signals.replay import replay_print_step, replay_run
        from telegram_bridge.bridge import polling_run
        from testsupport.telegram_bot_api import running_local_bot_api

        write = self.stdout.write
        log_file = self._quiet_console_logging(options["verbosity"])
        write(self.style.SUCCESS("Perps signals platform — offline demo (SQLite, eager tasks, no Redis)."))
        call_command("flush", interactive=False, verbosity=0)  # a demo run starts from a clean slate
        password = secrets.token_urlsafe(9)
        # The replay runs ~1000x faster than the wall clock; Telegram's per-chat limits are per wall-clock second,
        # so the local server gets a matching budget (production keeps the real limits from settings).
        settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = settings.TELEGRAM_RATE_CHAT_PER_SECOND = 1000.0
        with running_local_bot_api() as bot_api:
            write(f"Local Telegram Bot API server at {bot_api.base_url} (aiogram talks to it over HTTP).")
            users = self._users_create(bot_api, polling_run, password)
            printer = None if quiet else replay_print_step(write)
            monitor = _Monitor()

            feeds = _Feeds()

            def on_step(step):
                if printer:
                    printer(step)
                monitor.advance(step)
                feeds.advance(step)

            report = replay_run(on_step=on_step)
            monitor.advance(None)
            self._summary(report, users, bot_api, monitor, feeds)
        if log_file:
            write(f"Full log of the run: {log_file}")
        write(self.style.SUCCESS(f"Dashboard login: user {WEB_USERNAME!r}, password {password!r} "
                                 f"(staff; sees {users[0]}'s paper account)."))
        if serve:
            self._serve(port)

    # --- setup ---------------------------------------------------------------------------------------------------
    def _quiet_console_logging(self, verbosity: int) -> str | None:
        """At the default verbosity the console shows the demo's story and warnings; the full INFO log goes to
        var/demo.log. ``-v 2`` or an explicit LOG_LEVEL other than INFO keeps the configured console logging."""
        if verbosity >= 2 or settings.LOG_LEVEL != "INFO":
            return None
        from config.events import task_modules_load

        task_modules_load()  # Celery's Django fixup re-runs django.setup() (and dictConfig) on its first import
        root = logging.getLogger()
        path = settings.BASE_DIR / "var" / "demo.log"
        path.parent.mkdir(exist_ok=True)
        file_handler = logging.FileHandler(path, mode="w", encoding="utf-8")
        for handler in root.handlers:
            file_handler.setFormatter(handler.formatter)
            for filter_ in handler.filters:
                file_handler.addFilter(filter_)
            handler.setLevel(logging.WARNING)
        root.addHandler(file_handler)
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "no hostname": there is no broker, by design
        return str(path.relative_to(settings.BASE_DIR))

    def _users_create(self, bot_api, polling_run, password: str) -> list[TelegramUser]:
        """Each demo user sends /start through the bot (aiogram → local server → bridge → Django), then settings."""
        for demo in DEMO_USERS:
            bot_api.inject_message(user_id=demo.telegram_id, text="/start", username=demo.username,
                                   first_name=demo.username.split("_")[0].title())
        polling_run(timeout=1, max_updates=len(DEMO_USERS))
        users = []
        for demo in DEMO_USERS:
            user, _ = telegram_user_register(telegram_id=demo.telegram_id, username=demo.username)
            preferences_update(user=user, changes=demo.preferences)
            if demo.is_admin:
                telegram_users_admin_set(users=[user], admin=True)
            users.append(user)
        traders = [demo for demo in DEMO_USERS if not demo.is_admin]
        for demo in traders:  # each trader switches auto-trading on in the bot, as a real user does
            bot_api.inject_message(user_id=demo.telegram_id, text="/autotrade on", username=demo.username)
        polling_run(timeout=1, max_updates=len(traders))
        for user in users:
            user.refresh_from_db()
        web_user = get_user_model().objects.create_user(WEB_USERNAME, password=password, is_staff=True,
                                                         is_superuser=True)
        telegram_user_web_user_set(user=users[0], web_user=web_user)
        welcomed = sum(1 for demo in DEMO_USERS if bot_api.sent_messages(demo.telegram_id))
        trading = sum(1 for user in users if user.auto_trading_enabled)
        self.stdout.write(f"{len(users)} demo users registered through /start ({welcomed} welcomed by the bot); "
                          f"{trading} switched auto-trading on with /autotrade on.")
        return users

    # --- output --------------------------------------------------------------------------------------------------
    def _summary(self, report, users, bot_api, monitor, feeds) -> None:
        from trading.models import Position
        from trading.selectors import pnl_table, pnl_table_text

        write = self.stdout.write
        write("")
        write(self.style.MIGRATE_HEADING("Signals"))
        for line in report.summary_lines():
            write(line)
        write(feeds.summary())
        write("")
        write(self.style.MIGRATE_HEADING("Paper trades"))
        positions = Position.objects.select_related("symbol", "user").order_by("opened_at", "pk")
        header = (f"{'user':<12} {'symbol':<15} {'side':<5} {'opened (UTC)':<16} {'qty':>12} {'entry':>11} "
                  f"{'closed (UTC)':<16} {'exit':<9} {'fees':>8} {'funding':>8} {'net PnL':>9}")
        write(header)
        write("-" * len(header))
        for p in positions:
            closed = f"{p.closed_at:%Y-%m-%d %H:%M}" if p.closed_at else "open"
            net = p.realised_pnl - p.fees - p.funding
            write(f"{p.user.username[:12]:<12} {p.symbol.symbol:<15} {p.side:<5} {p.opened_at:%Y-%m-%d %H:%M} "
                  f"{_number(p.quantity):>12} {_number(p.entry_price):>11} {closed:<16} {(p.close_reason or '-')[:9]:<9} "
                  f"{p.fees:>8.3f} {p.funding:>8.3f} {net:>+9.3f}")
        if not positions:
            write("(no paper trades)")
        write("")
        write(self.style.MIGRATE_HEADING("PnL per user (paper, after fees and funding)"))
        write(pnl_table_text(pnl_table(users=[u for u in users if u.auto_trading_enabled])))
        write("The same numbers, as the bot answers /pnl all (and the dashboard shows under All time):")
        for user in users:
            if user.auto_trading_enabled:
                reply = self._ask_bot(bot_api, user, "/pnl all")
                shown = [line for line in reply.splitlines() if line.startswith(("Trades:", "Net:"))]
                write(f"  @{user.username}: " + " | ".join(shown))
        write("")
        delivered = Counter(m["chat_id"] for m in bot_api.sent_messages())
        write(self.style.MIGRATE_HEADING("Telegram"))
        write(f"{sum(delivered.values())} messages delivered through the Bot API: "
              + ", ".join(f"@{u.username} {delivered.get(str(u.telegram_id), 0)}" for u in users))
        write(f"Last messages @{users[0].username} saw:")
        for line in bot_api.transcript(users[0].telegram_id)[-3:]:
            write("  " + line.replace("\n", "\n  "))
        write(f"Position monitor: {monitor.candles} candle(s) applied; funding charged {monitor.funding} time(s).")

    def _ask_bot(self, bot_api, user, text: str) -> str:
        """Send ``text`` as ``user`` through the bot and return its answer as the Telegram client shows it."""
        import re

        from telegram_bridge.bridge import polling_run

        before = len(bot_api.sent_messages(user.telegram_id))
        bot_api.inject_message(user_id=user.telegram_id, text=text, username=user.username)
        polling_run(timeout=1, max_updates=1)
        answers = bot_api.sent_messages(user.telegram_id)[before:]
        return re.sub(r"<[^>]+>", "", answers[-1]["text"]) if answers else "(no answer)"

    def _serve(self, port: int) -> None:
        import uvicorn

        self.stdout.write(f"Serving the dashboard on http://127.0.0.1:{port}/dashboard/ (admin at /admin/, WebSockets at "
                          "/ws/live/) — Ctrl-C to stop.")
        call_command("collectstatic", interactive=False, verbosity=0)
        uvicorn.run("config.asgi:application", host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def _number(value: Decimal) -> str:
    """A Decimal without trailing zeros and without exponent, thousands separated for large quantities."""
    value = value.normalize()
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:f}"


class _Feeds:
    """The other beat jobs on the replay clock: order flow every step, news hourly, funding rates every 8 hours."""

    def __init__(self) -> None:
        self.steps = self.flow_alerts = self.news_signals = self.funding_alerts = 0
        self.failures: Counter = Counter()

    def advance(self, step) -> None:
        from news.tasks import poll_funding_rates, poll_news
        from signals.flow_monitor import flow_monitor_run

        self.steps += 1
        jobs = [("flow", flow_monitor_run)]
        if self.steps % 4 == 0:
            jobs.append(("news", poll_news))
        if self.steps % 32 == 0:
            jobs.append(("funding", poll_funding_rates))
        for name, job in jobs:
            try:
                result = job()
            except Exception as error:  # one feed failing must not stop the replay; counted and shown
                self.failures[f"{name}: {type(error).__name__}"] += 1
                continue
            if name == "flow":
                self.flow_alerts += len(getattr(result, "alerts", []) or [])
            elif name == "news":
                self.news_signals += result.get("signals", 0) if isinstance(result, dict) else 0
            else:
                self.funding_alerts += result.get("alerts", 0) if isinstance(result, dict) else 0

    def summary(self) -> str:
        from signals.models import Signal

        by_source = Counter(Signal.objects.values_list("source", flat=True))
        line = ("Signals by source: " + ", ".join(f"{source} {count}" for source, count in sorted(by_source.items()))
                + f"; order-flow alerts {self.flow_alerts}, news signals {self.news_signals}, "
                f"funding alerts {self.funding_alerts}")
        if self.failures:
            line += "; feed failures: " + ", ".join(f"{k} ×{v}" for k, v in self.failures.items())
        return line


class _Monitor:
    """After every replay step: apply the closed candles to open paper positions and charge due funding."""

    def __init__(self) -> None:
        self.candles = self.funding = 0

    def advance(self, step) -> None:
        from trading.market import market_now
        from trading.models import Position
        from trading.monitor import positions_monitor
        from trading.services import funding_charge_due

        if step is not None and not Position.objects.filter(status=Position.Status.OPEN).exists():
            return
        report = positions_monitor()
        self.candles += report.candles
        self.funding += funding_charge_due(now=market_now())
