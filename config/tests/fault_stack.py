"""The production topology the fan-out fault tests break: a private redis-server (append-only file, ``everysec`` as
in docker-compose), a trade worker (queue ``trade``), a worker for ``telegram``, ``scan`` and ``default``, and beat
running the sweepers (config/tests/settings_fanout_faults.py), all against the test's PostgreSQL database; the Telegram
Bot API is the local stand-in of this test process. A burst of signals for many paper auto-traders is announced as
``signals.services.signal_publish`` does (every consumer of ``signal.created`` gets a task), then a test breaks
something and ``assert_invariants`` checks what must hold afterwards:

* every (signal, user) has exactly one execution intent, decided (here: opened), with exactly one position whose
  entry order is filled once, open, with its stop;
* every card reached every recipient exactly once, and no chat received any message twice;
* all of it within ``RECOVERY_BUDGET_SECONDS`` of the recovery (measured from the moment every process restarted
  because of the fault reported itself ready).

Start-up deadlines are measured, not guessed: the first start of each process is timed (``startup_seconds``) and
every later wait for a start allows ``STARTUP_FACTOR`` times the slowest measured one, so a loaded machine that is
slow everywhere does not fail the test for being slow.

The machine's shared Redis is never touched; the PostgreSQL outage is confined to the test database (``ALTER DATABASE
… ALLOW_CONNECTIONS false`` and its backends terminated), the shared server keeps running.
"""

from __future__ import annotations

import contextlib
import os
import signal as os_signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
from celery import Celery

from config.celery import task_queue_name
from config.tests.ops_processes import ROOT, RedisServer, kill_group, service_env
from signals.tests.factories import SignalFactory, SymbolFactory
from testsupport.telegram_bot_api import DEFAULT_TOKEN, LocalBotAPIServer

RECOVERY_BUDGET_SECONDS = 60.0  # the product's promise: every (signal, user) decided within a minute of recovery
STARTUP_FACTOR = 3.0
SIGNAL_CREATED_CONSUMERS = (
    "telegram_bridge.tasks.broadcast_signal",
    "trading.tasks.execute_signal",
    "web.live_updates.push_signal",
)

# Bundled replay markets: the workers price positions from the replay data at its end (their private Redis holds no
# replay clock), so each signal's levels are set around that same price, read here the same way.
MARKETS = ("XRP/USDT:USDT", "ETH/BTC", "LTC/BTC", "ETC/BTC", "XLM/BTC")
KINDS = (("long", "technical"), ("short", "technical"), ("long", "news"), ("short", "news"), ("long", "flow"))


def burst_signals() -> list:
    """One signal per bundled replay market (one position per user and symbol), levels ±5 % and +10 % around the
    market's last replay price (a paper fill beyond the stop or the first target would be refused)."""
    from django.core.cache.backends.locmem import LocMemCache

    from signals.market_data.replay import ReplayMarketData

    replay = ReplayMarketData(cache=LocMemCache("fault-stack-replay", {}))
    signals = []
    for (side, source), name in zip(KINDS, MARKETS, strict=True):
        price = Decimal(str(replay.last_price(name))).quantize(Decimal("0.00000001"))
        symbol = SymbolFactory(
            symbol=name,
            base=name.split("/")[0],
            tick_size=Decimal("0.00000001"),
            step_size=Decimal("1"),
            min_quantity=Decimal("1"),
            min_notional=Decimal("5"),
        )
        sign = 1 if side == "long" else -1
        level = lambda r, p=price: (p * (1 + r)).quantize(Decimal("0.00000001"))  # noqa: E731
        signals.append(
            SignalFactory(
                symbol=symbol,
                side=side,
                source=source,
                entry=price,
                stop=level(-sign * Decimal("0.05")),
                tp1=level(sign * Decimal("0.05")),
                tp2=level(sign * Decimal("0.1")),
                atr=level(Decimal("-0.97")),
                expires_at=None,
            )
        )
    return signals


def burst_users(count: int) -> list:
    from trading.tests.paper_fixtures import paper_auto_trader

    return [paper_auto_trader() for _ in range(count)]


@dataclass
class Service:
    """One supervised process (what systemd's Restart=always or compose's ``restart:`` does in production)."""

    name: str
    argv: list[str]
    ready_marker: str
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen | None = None
    starts: int = 0
    started_at: float = 0.0
    ready_at: float | None = None
    startup_seconds: list[float] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started_at, self.ready_at = time.monotonic(), None

    def poll_ready(self) -> bool:
        if (
            self.ready_at is None
            and self.process is not None
            and self.ready_marker in self.log.read_text(errors="replace")
        ):
            self.ready_at = time.monotonic()
            self.startup_seconds.append(self.ready_at - self.started_at)
        return self.ready_at is not None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = os_signal.SIGKILL) -> None:
        if self.process is not None:
            kill_group(self.process, sig)

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log.name} ---\n" + self.log.read_text(errors="replace")[-chars:]


class FanoutStack:
    def __init__(self, *, tmp_path: Path, db: dict, bot_api: LocalBotAPIServer, concurrency: int = 2):
        self.tmp_path, self.db, self.bot_api = tmp_path, db, bot_api
        self.redis = RedisServer(tmp_path, appendfsync="everysec")
        self.env: dict[str, str] = {}
        self.services: dict[str, Service] = {}
        self.concurrency = concurrency
        self.restarted: list[tuple[str, float]] = []  # (service, when) restarted after it exited

    # --- processes ------------------------------------------------------------------------------------------------
    def start(self) -> FanoutStack:
        self.redis.start()
        self.env = service_env(
            db=self.db,
            redis_url=self.redis.url,
            DJANGO_SETTINGS_MODULE="config.tests.settings_fanout_faults",
            TELEGRAM_API_BASE=self.bot_api.base_url,
            TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
            TELEGRAM_CHANNEL_ID="",
            MARKET_DATA_SOURCE="replay",
        )
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        worker = [
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(self.concurrency),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        for name, argv, marker in (
            ("trade-worker", [*celery, *worker, "-Q", "trade", "-n", "trade@%h"], " ready."),
            ("worker", [*celery, *worker, "-Q", "telegram,scan,default", "-n", "main@%h"], " ready."),
            (
                "beat",
                [*celery, "beat", "--loglevel", "INFO", "-s", str(self.tmp_path / "beat-schedule")],
                "beat: Starting",
            ),
        ):
            self.services[name] = Service(name=name, argv=argv, ready_marker=marker, env=self.env, logs=self.tmp_path)
        for service in self.services.values():
            service.start()
        deadline = time.monotonic() + 300  # the first start: nothing measured yet, a generous bound
        while not all(s.poll_ready() for s in self.services.values()):
            self._fail_if(time.monotonic() > deadline, "the services never started")
            self._fail_if(any(not s.alive() for s in self.services.values()), "a service exited at start-up")
            time.sleep(0.1)
        return self

    def startup_deadline(self) -> float:
        """Seconds to allow for a start: STARTUP_FACTOR × the slowest start measured so far."""
        measured = [t for s in self.services.values() for t in s.startup_seconds]
        return STARTUP_FACTOR * max(measured)

    def supervise(self) -> None:
        """Restart what exited (as the service manager does) and note when restarted services become ready."""
        for service in self.services.values():
            if not service.alive():
                service.start()
                self.restarted.append((service.name, time.monotonic()))
            service.poll_ready()

    def restart(self, name: str) -> None:
        self.services[name].start()

    def wait_ready(self, names: list[str] | None = None) -> float:
        """Supervise until the services are ready (within the measured start-up deadline); returns the moment."""
        deadline = time.monotonic() + self.startup_deadline()
        while True:
            self.supervise()
            services = [self.services[n] for n in names] if names else list(self.services.values())
            if all(s.ready_at is not None for s in services):
                return max(s.ready_at for s in services)
            self._fail_if(
                time.monotonic() > deadline,
                f"not ready within {self.startup_deadline():.0f} s (3 × the measured start-up time)",
            )
            time.sleep(0.1)

    def stop(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(Exception):
                service.kill(os_signal.SIGKILL)
        self.redis.stop()

    def crash_redis(self) -> None:
        """kill -9 the redis-server: what the append-only file had not synced (up to a second) is lost."""
        process = self.redis.process
        process.send_signal(os_signal.SIGKILL)
        process.wait(timeout=10)
        self.redis.process = None

    def tails(self) -> str:
        return "\n".join(s.tail() for s in self.services.values())

    def _fail_if(self, condition: bool, message: str) -> None:
        if condition:
            raise AssertionError(f"{message}\n{self.tails()}")

    # --- the burst ------------------------------------------------------------------------------------------------
    def announce(self, signals: list) -> None:
        """What ``signals.services.signal_publish`` does after the commit: one task per consumer, ``published_at``."""
        from django.utils import timezone

        from signals.models import Signal

        client = Celery(broker=self.redis.url, set_as_current=False)  # never the app of this process
        try:
            for signal in signals:
                for name in SIGNAL_CREATED_CONSUMERS:
                    client.send_task(name, kwargs={"signal_id": signal.pk}, queue=task_queue_name(name))
                Signal.objects.filter(pk=signal.pk).update(published_at=timezone.now())
        finally:
            client.close()


# --- PostgreSQL outage confined to the test database --------------------------------------------------------------
def _admin(db: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        dbname="postgres",
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        autocommit=True,
    )


@contextlib.contextmanager
def postgres_cut(db: dict, *, keep_pid: int):
    """No new connection to the test database, and every one but ``keep_pid`` (the test's own) terminated, again and
    again while the outage lasts; connections allowed again on exit (also when the test fails)."""
    stop = threading.Event()
    name = db["NAME"]

    def terminate_loop(admin: psycopg.Connection) -> None:
        while not stop.is_set():
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
                "AND pid <> pg_backend_pid()",
                [name, keep_pid],
            )
            stop.wait(0.2)

    with _admin(db) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        thread = threading.Thread(target=terminate_loop, args=(admin,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


# --- invariants ---------------------------------------------------------------------------------------------------
@dataclass
class Progress:
    decided: int
    intents: int
    expected_intents: int
    cards_sent: int
    cards_expected: int

    @property
    def done(self) -> bool:
        return self.decided == self.intents == self.expected_intents and self.cards_sent >= self.cards_expected


def progress(*, users: list, signals: list, bot_api: LocalBotAPIServer) -> Progress:
    from trading.models import ExecutionIntent

    intents = ExecutionIntent.objects.filter(signal__in=signals)
    cards = _cards(signals)
    chats = {str(u.telegram_id) for u in users}
    sent = sum(1 for m in bot_api.sent_messages() if m["chat_id"] in chats and m["text"] in cards)
    return Progress(
        decided=intents.exclude(outcome="pending").count(),
        intents=intents.count(),
        expected_intents=len(users) * len(signals),
        cards_sent=sent,
        cards_expected=len(users) * len(signals),
    )


def _cards(signals: list) -> dict[str, int]:
    from signals.models import Signal
    from telegram_bridge import texts

    return {
        texts.signal_card(s): s.pk
        for s in Signal.objects.select_related("symbol").filter(pk__in=[s.pk for s in signals])
    }


def wait_for_progress(stack: FanoutStack, *, users: list, signals: list, share: float) -> Progress:
    """Supervise until ``share`` of the intents are decided (the burst is under way): the moment to break something."""
    deadline = time.monotonic() + 60 + stack.startup_deadline()
    while True:
        stack.supervise()
        state = progress(users=users, signals=signals, bot_api=stack.bot_api)
        if state.decided >= share * state.expected_intents:
            return state
        stack._fail_if(time.monotonic() > deadline, f"the burst never got under way: {state}")
        time.sleep(0.05)


def wait_until_done(stack: FanoutStack, *, users: list, signals: list, fault_at: float, fault_ended_at: float) -> float:
    """Supervise until every intent is decided and every card sent; returns the seconds that took after the recovery:
    the end of the fault, or later the moment the last service (re)started since the fault was ready."""
    deadline = fault_ended_at + RECOVERY_BUDGET_SECONDS + 2 * stack.startup_deadline()
    while True:
        stack.supervise()
        state = progress(users=users, signals=signals, bot_api=stack.bot_api)
        restarted = [s for s in stack.services.values() if s.started_at >= fault_at]
        recovered_at = max([fault_ended_at, *(s.ready_at or time.monotonic() for s in restarted)])
        if state.done and all(s.ready_at is not None for s in restarted):
            return time.monotonic() - recovered_at
        stack._fail_if(
            time.monotonic() > deadline,
            f"not done {time.monotonic() - fault_ended_at:.0f} s after the fault ended: {state}",
        )
        time.sleep(0.25)


def assert_invariants(*, users: list, signals: list, bot_api: LocalBotAPIServer) -> None:
    from trading.models import ExecutionIntent, Fill, Order, Position

    pairs = {(u.pk, s.pk) for u in users for s in signals}
    intents = list(ExecutionIntent.objects.filter(signal__in=signals).values_list("user_id", "signal_id", "outcome"))
    assert Counter((u, s) for u, s, _ in intents) == Counter(pairs), "one intent per (signal, user)"
    assert Counter(o for _, _, o in intents) == {"opened": len(pairs)}, Counter(o for _, _, o in intents)

    positions = Position.objects.filter(signal__in=signals)
    assert Counter(positions.values_list("user_id", "signal_id")) == Counter(pairs), "one position per (signal, user)"
    assert set(positions.values_list("status", flat=True)) == {"open"}
    assert not positions.filter(stop_price__isnull=True).exists(), "every open position has its stop"
    entries = Order.objects.filter(position__in=positions, leg="entry")
    assert Counter(entries.values_list("position_id", flat=True)) == Counter(positions.values_list("pk", flat=True))
    assert set(entries.values_list("state", flat=True)) == {"filled"}
    fills = Counter(Fill.objects.filter(order__in=entries).values_list("order_id", flat=True))
    assert set(fills.values()) == {1} and len(fills) == len(pairs), "every entry filled exactly once"

    cards = _cards(signals)
    chats = {str(u.telegram_id) for u in users}
    received = Counter((m["chat_id"], cards[m["text"]]) for m in bot_api.sent_messages() if m["text"] in cards)
    expected = Counter((str(u.telegram_id), s.pk) for u in users for s in signals)
    assert received == expected, (
        f"cards not delivered exactly once: {received - expected} extra, {expected - received} missing"
    )
    repeats = Counter((m["chat_id"], m["text"]) for m in bot_api.sent_messages() if m["chat_id"] in chats)
    assert not [k for k, n in repeats.items() if n > 1], "a chat received the same message twice"


def print_report(name: str, stack: FanoutStack, **numbers) -> None:
    """One line per run: the figures, the measured start-ups and what the sweepers had to put back."""
    startups = {n: [round(t, 1) for t in s.startup_seconds] for n, s in stack.services.items()}
    logs = "".join(path.read_text(errors="replace") for path in stack.tmp_path.glob("*.log"))
    swept = {
        "signals announced again": logs.count("announced to them again"),
        "intent re-queues": logs.count("not decided in time; queued again"),
        "delivery re-sends": logs.count("deliveries_resend_stale") and _resent(logs),
    }
    print(
        f"[{name}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()) + f"; start-ups {startups}; "
        f"restarted {[(n, round(t, 1)) for n, t in stack.restarted]}; sweepers {swept}",
        file=sys.stderr,
    )


def _resent(logs: str) -> int:
    """Chunks the delivery sweeper queued (its task returns how many)."""
    import re

    return sum(int(n) for n in re.findall(r"deliveries_resend_stale\[[^\]]+\] succeeded in [\d.]+s: (\d+)", logs))


def own_database_pid() -> int:
    """The backend of this test process' connection (kept through a PostgreSQL cut, to watch the others)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def fault_repeat() -> int:
    """How many times the repeatable scenarios run: ``FAULT_REPEAT=10`` for the acceptance run; once in ``make test``."""
    return max(1, int(os.environ.get("FAULT_REPEAT", "1")))
