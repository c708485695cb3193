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
import re
import secrets
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from accounts.models import TelegramUser
from accounts.services import telegram_user_web_user_set
from analytics.models import BacktestRun
from config.events import task_modules_load
from demo.story import (
    DEMO_USERS,
    LIVE_USER,
    BotUsers,
    Feeds,
    PositionWatch,
    demo_settings_apply,
    is_perpetual_window,
    new_api_keys,
)
from news.models import FundingAlert, NewsArticle
from signals.market_data import get_market_data, market_data_override, reset_market_data
from signals.market_data.base import datetime_to_ms
from signals.models import Signal
from signals.replay import replay_print_step, replay_run
from telegram_bridge.bridge import polling_run
from testsupport.exchanges.bitunix_fake import BitunixFakeServer
from testsupport.telegram_bot_api import running_local_bot_api
from trading.models import Order, Position, TradeRefusal
from trading.selectors import pnl_table, pnl_table_text

WEB_USERNAME = "demo"
# The two bundled windows, without the days at their ends where nothing new happens (the replay's time goes to the
# scans, ~70 ms a step): 2018 spot until after its last recorded news story, the perpetual until after its last one.
DEMO_WINDOWS = (
    (None, datetime(2018, 1, 23, 0, 0, tzinfo=UTC)),
    (datetime(2021, 11, 15, 0, 0, tzinfo=UTC), datetime(2021, 11, 21, 0, 0, tzinfo=UTC)),
)


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
        write = self.stdout.write
        log_file = self._quiet_console_logging(options["verbosity"])
        write(self.style.SUCCESS("Perps signals platform — offline demo (SQLite, eager tasks, no Redis)."))
        call_command("flush", interactive=False, verbosity=0)  # a demo run starts from a clean slate
        password = secrets.token_urlsafe(9)
        api_key, api_secret = new_api_keys()
        settings.REPLAY_SPEED = 0  # this process never starts the running clock; the dashboard below reads the end
        reset_market_data()
        # the demo's own clock (each replay window then walks one of its own, see replay_run)
        with (
            running_local_bot_api() as bot_api,
            BitunixFakeServer(api_key=api_key, secret=api_secret) as bitunix,
            market_data_override(get_market_data().with_own_clock()) as market_data,
        ):
            demo_settings_apply(bitunix_url=bitunix.url)
            bitunix.account.set_price("XRP/USDT:USDT", "1")
            write(
                f"Local Telegram Bot API server at {bot_api.base_url} (aiogram talks to it over HTTP); "
                f"local Bitunix stand-in at {bitunix.url} (signed HTTP)."
            )
            bot = BotUsers(bot_api)
            users = self._users_create(bot, password)
            printer = None if quiet else replay_print_step(write)
            watch = PositionWatch(bitunix)
            feeds = Feeds()
            story: list[str] = []

            def on_step(step):
                if printer:
                    printer(step)
                now_ms = datetime_to_ms(step.at)
                if is_perpetual_window(step.at) and LIVE_USER.username not in {u.username for u in users}:
                    users.append(self._live_user_join(bot, api_key, api_secret, story, step.at))
                watch.advance(get_market_data(), now_ms)  # the replay window's clock
                feeds.advance(now_ms)
                story.extend(
                    f"{step.at:%Y-%m-%d %H:%M} {line}" for line in bot.resume_if_paused([*DEMO_USERS, LIVE_USER])
                )

            report = None
            for start, end in DEMO_WINDOWS:
                part = replay_run(start=start, end=end, on_step=on_step)
                report = part if report is None else report.merged(part)
                market_data.advance_to(end)  # the demo's clock follows the window's
            watch.advance(market_data, market_data.now_ms())
            backtest = self._backtest_from_the_bot(bot, story)
            self._summary(report, users, bot_api, watch, feeds, bot, story, backtest, bitunix)
        # the dashboard served below reads the default replay clock, standing at the end of the data (as the demo)
        reset_market_data()
        if log_file:
            write(f"Full log of the run: {log_file}")
        write(
            self.style.SUCCESS(
                f"Dashboard login: user {WEB_USERNAME!r}, password {password!r} "
                f"(staff; sees {users[0]}'s paper account)."
            )
        )
        if serve:
            self._serve(port)

    # --- setup ---------------------------------------------------------------------------------------------------
    def _quiet_console_logging(self, verbosity: int) -> str | None:
        """At the default verbosity the console shows the demo's story and warnings; the full INFO log goes to
        var/demo.log. ``-v 2`` or an explicit LOG_LEVEL other than INFO keeps the configured console logging."""
        if verbosity >= 2 or settings.LOG_LEVEL != "INFO":
            return None

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

    def _users_create(self, bot: BotUsers, password: str) -> list[TelegramUser]:
        """Each demo user sends /start through the bot (aiogram → local server → bridge → Django), then sets their
        preferences in /settings with the buttons and typed values, as a person would."""
        users = [bot.register(demo) for demo in DEMO_USERS]
        web_user = get_user_model().objects.create_user(
            WEB_USERNAME, password=password, is_staff=True, is_superuser=True
        )
        telegram_user_web_user_set(user=users[0], web_user=web_user)
        welcomed = sum(1 for demo in DEMO_USERS if bot.bot_api.sent_messages(demo.telegram_id))
        self.stdout.write(
            f"{len(users)} demo users registered through /start and set up in /settings "
            f"({welcomed} welcomed by the bot)."
        )
        return users

    def _live_user_join(self, bot: BotUsers, api_key: str, api_secret: str, story: list[str], at) -> TelegramUser:
        """When the perpetual's data starts, @carol_demo joins, connects her Bitunix keys and switches to live mode."""
        user = bot.register(LIVE_USER)
        connected = bot.connect_bitunix(LIVE_USER, api_key=api_key, secret=api_secret)
        mode = bot.last_answer(LIVE_USER)
        story.append(
            f"{at:%Y-%m-%d %H:%M} @{LIVE_USER.username} joined: {connected.splitlines()[0][:90]} / {mode[:60]}"
        )
        user.refresh_from_db()
        return user

    def _backtest_from_the_bot(self, bot: BotUsers, story: list[str]):
        """The operator sends /backtest XRP 5; the finished run comes back as the equity-curve image."""

        admin = next(u for u in DEMO_USERS if u.admin)
        before = {m["message_id"] for m in bot.bot_api.sent_messages(admin.telegram_id)}
        bot.say(admin, "/backtest XRP 5")
        story.append(f"@{admin.username} /backtest XRP 5: {bot.last_answer(admin)[:100]}")
        photos = [
            m
            for m in bot.bot_api.sent_messages(admin.telegram_id)
            if m["message_id"] not in before and m.get("method", "").lower() == "sendphoto"
        ]
        return BacktestRun.objects.order_by("-pk").first(), photos

    # --- output --------------------------------------------------------------------------------------------------
    def _summary(self, report, users, bot_api, watch, feeds, bot, story, backtest, bitunix) -> None:
        write = self.stdout.write
        write("")
        write(self.style.MIGRATE_HEADING("Signals"))
        for line in report.summary_lines():
            write(line)
        write("")
        write(self.style.MIGRATE_HEADING("Paper and live trades"))
        positions = Position.objects.select_related("symbol", "user").order_by("opened_at", "pk")
        header = (
            f"{'user':<12} {'mode':<5} {'symbol':<15} {'side':<5} {'opened (UTC)':<16} {'qty':>12} {'entry':>11} "
            f"{'closed (UTC)':<16} {'exit':<9} {'fees':>8} {'funding':>8} {'net PnL':>9}"
        )
        write(header)
        write("-" * len(header))
        for p in positions:
            opened = f"{p.opened_at:%Y-%m-%d %H:%M}" if p.opened_at else "-"
            closed = f"{p.closed_at:%Y-%m-%d %H:%M}" if p.closed_at else p.status
            net = p.realised_pnl - p.fees - p.funding
            write(
                f"{p.user.username[:12]:<12} {p.mode:<5} {p.symbol.symbol:<15} {p.side:<5} {opened:<16} "
                f"{_number(p.quantity):>12} {_number(p.entry_price or Decimal(0)):>11} {closed:<16} "
                f"{(p.close_reason or '-')[:9]:<9} {p.fees:>8.3f} {p.funding:>8.3f} {net:>+9.3f}"
            )
        if not positions:
            write("(no trades)")
        write("")
        write(self.style.MIGRATE_HEADING("PnL per user (after fees and funding)"))
        traders = list(TelegramUser.objects.filter(pk__in=[u.pk for u in users], auto_trading_enabled=True))
        write(pnl_table_text(pnl_table(users=traders)))
        write("The same numbers, as the bot answers /pnl all (and the dashboard shows under All time):")
        for user in traders:
            reply = self._ask_bot(bot_api, user, "/pnl all")
            shown = [line for line in reply.splitlines() if line.startswith(("Trades:", "Net:"))]
            write(f"  @{user.username}: " + " | ".join(shown))
        write("")
        delivered = Counter(m["chat_id"] for m in bot_api.sent_messages())
        write(self.style.MIGRATE_HEADING("Telegram"))
        write(
            f"{sum(delivered.values())} messages delivered through the Bot API: "
            + ", ".join(f"@{u.username} {delivered.get(str(u.telegram_id), 0)}" for u in users)
        )
        write(f"Last messages @{users[0].username} saw:")
        for line in bot_api.transcript(users[0].telegram_id)[-3:]:
            write("  " + line.replace("\n", "\n  "))
        write(
            f"Position monitor: {watch.candles} candle(s) applied; funding charged {watch.funding} time(s); "
            f"{watch.reconciles} live reconcile pass(es)."
        )
        write("What the users did through the bot:")
        for line in story:
            write(f"  {line}")
        write("")
        self._capabilities(bot_api, feeds, bot, backtest, bitunix)

    def _capabilities(self, bot_api, feeds, bot, backtest, bitunix) -> None:
        """One line per capability: its count, and where the users saw it in Telegram (the dashboard lists the same
        signals, positions, orders and backtests)."""

        write = self.stdout.write
        transcript = "\n\n".join(bot_api.transcript())

        def seen(pattern: str) -> str:
            match = re.search(pattern, transcript)
            return "in Telegram: " + match.group(0).replace("\n", " ")[:70] if match else "not in Telegram"

        by_source = Counter(Signal.objects.values_list("source", flat=True))
        articles = Counter(NewsArticle.objects.values_list("decision", flat=True))
        flow = [
            s
            for s in Signal.objects.filter(source="flow")
            if sum(
                1
                for key in (s.indicators or {})
                if key.startswith("flow_")
                and key not in {"flow_score", "flow_agreeing", "flow_notional", "flow_window_ms"}
            )
            >= 2
        ]
        pauses = TradeRefusal.objects.filter(reason__in=[TradeRefusal.Reason.DRAWDOWN, TradeRefusal.Reason.DAILY_LOSS])
        live = Position.objects.filter(mode="live")
        protective = Order.objects.filter(position__mode="live", leg__in=["sl", "tp1", "tp2"])
        run, photos = backtest
        rows = [
            ("technical signals", by_source.get("technical", 0), seen(r"(LONG|SHORT) \S+/BTC[^\n]*technical")),
            ("news signals", by_source.get("news", 0), seen(r"(LONG|SHORT) \S+[^\n]*news[^\n]*")),
            (
                "news articles processed",
                NewsArticle.objects.exclude(processed_at=None).count(),
                f"of {NewsArticle.objects.count()} fetched; decisions {dict(sorted(articles.items()))}; "
                + seen(r"Exchange delists[^\n]*"),
            ),
            (
                "funding alerts",
                FundingAlert.objects.count(),
                f"venues {sorted({e for a in FundingAlert.objects.all() for e in a.details.get('rates', {})})}; "
                + seen(r"Funding (arbitrage|extreme|rate)[^\n]*"),
            ),
            (
                "order-flow alerts",
                len(flow),
                f"exchanges agreeing "
                f"{sorted({k[5:] for s in flow for k in s.indicators if k.startswith('flow_') and k[5:] not in ('score', 'agreeing', 'notional', 'window_ms')})}; "
                + seen(r"(LONG|SHORT) XRP/USDT:USDT[^\n]*flow"),
            ),
            (
                "auto flips",
                Position.objects.filter(close_reason=Position.CloseReason.FLIP).count(),
                seen(r"[^\n]*Flipped[^\n]*"),
            ),
            (
                "risk pauses",
                pauses.count(),
                f"by {sorted(set(pauses.values_list('reason', flat=True)))}; "
                f"resumed through /resume {bot.resumes} time(s); " + seen(r"Auto-trading resumed[^\n]*"),
            ),
            (
                "live trades on Bitunix",
                live.count(),
                f"{protective.count()} stop/take-profit order(s) on the exchange "
                f"({len(bitunix.requests_to('/tpsl/place_order'))} signed TP/SL requests); "
                + seen(r"Position \w+: live [^\n]*"),
            ),
            (
                "backtests",
                BacktestRun.objects.filter(status=BacktestRun.Status.SUCCEEDED).exclude(equity_curve="").count(),
                f"run #{run.pk if run else '-'} {getattr(run, 'status', '-')}; equity-curve image sent to the admin: "
                f"{len(photos)}",
            ),
            (
                "subscriptions bought in the bot",
                sum(1 for sub in bot.subscriptions if sub.unlocked_after),
                f"{', '.join(f'@{sub.user.username} {sub.payment.status}' for sub in bot.subscriptions)}; "
                + seen(r"Payment received[^\n]*"),
            ),
        ]
        write(self.style.MIGRATE_HEADING("Capabilities shown"))
        for name, count, where in rows:
            write(f"  {name:<32} {count!s:>5}  {where}")
        if feeds.failures:
            write("Feed failures: " + ", ".join(f"{k} ×{v}" for k, v in feeds.failures.items()))

    def _ask_bot(self, bot_api, user, text: str) -> str:
        """Send ``text`` as ``user`` through the bot and return its answer as the Telegram client shows it."""
        import re

        before = len(bot_api.sent_messages(user.telegram_id))
        bot_api.inject_message(user_id=user.telegram_id, text=text, username=user.username)
        polling_run(timeout=1, max_updates=1)
        answers = bot_api.sent_messages(user.telegram_id)[before:]
        return re.sub(r"<[^>]+>", "", answers[-1]["text"]) if answers else "(no answer)"

    def _serve(self, port: int) -> None:
        import uvicorn

        self.stdout.write(
            f"Serving the dashboard on http://127.0.0.1:{port}/dashboard/ (admin at /admin/, WebSockets at "
            "/ws/live/) — Ctrl-C to stop."
        )
        call_command("collectstatic", interactive=False, verbosity=0)
        uvicorn.run("config.asgi:application", host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def _number(value: Decimal) -> str:
    """A Decimal without trailing zeros and without exponent, thousands separated for large quantities."""
    value = value.normalize()
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:f}"
