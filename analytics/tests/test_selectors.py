"""Analytics selectors on factory-boy data: DAU/WAU/MAU, signal and asset performance, paper vs live, subscriptions,
operator switches and system health."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Payment, Subscription, WebhookEvent
from accounts.tests.factories import (
    PaymentFactory,
    PlanFactory,
    SubscriptionFactory,
    TelegramUserFactory,
    WebhookEventFactory,
)
from analytics import selectors, services
from analytics.models import AnalyticsSnapshot, SystemSetting
from analytics.tests.factories import HeartbeatFactory, UserActivityFactory
from config.models import OutboxEvent
from signals.models import Signal
from signals.tests.factories import SignalFactory, SymbolFactory
from trading.models import Position
from trading.tests.factories import PositionFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def closed_signal(*, pnl, symbol=None, source=Signal.Source.TECHNICAL, risk="medium", closed_at=NOW):
    kwargs = {"symbol": symbol} if symbol is not None else {}
    return SignalFactory(
        status=Signal.Status.CLOSED,
        outcome="tp1" if Decimal(pnl) > 0 else "sl",
        outcome_pnl_pct=Decimal(pnl),
        source=source,
        risk_level=risk,
        closed_at=closed_at,
        **kwargs,
    )


def closed_position(*, symbol, realised, fees="0", funding="0", mode="paper", user=None):
    signal = SignalFactory(symbol=symbol, status=Signal.Status.CLOSED)
    kwargs = {"user": user} if user is not None else {}
    return PositionFactory(
        signal=signal,
        status=Position.Status.CLOSED,
        realised_pnl=Decimal(realised),
        fees=Decimal(fees),
        funding=Decimal(funding),
        mode=mode,
        exchange="paper" if mode == "paper" else "okx",
        closed_at=NOW - timedelta(hours=1),
        **kwargs,
    )


class TestActiveUsers:
    def test_dau_wau_mau_count_distinct_users_in_each_window(self):
        daily, weekly, monthly, stale = TelegramUserFactory.create_batch(4)
        UserActivityFactory(user=daily, created_at=NOW - timedelta(hours=2))
        UserActivityFactory(user=daily, created_at=NOW - timedelta(hours=3), kind="callback")  # same user twice
        UserActivityFactory(user=weekly, created_at=NOW - timedelta(days=3), kind="dashboard")
        UserActivityFactory(user=monthly, created_at=NOW - timedelta(days=20), kind="api")
        UserActivityFactory(user=stale, created_at=NOW - timedelta(days=45))
        UserActivityFactory(user=stale, created_at=NOW + timedelta(hours=1))  # after "now": not counted

        assert selectors.active_user_counts(now=NOW) == {"dau": 1, "wau": 2, "mau": 3}

    def test_activity_record_feeds_the_counts(self):
        user = TelegramUserFactory()
        services.activity_record(user=user, kind="command", name="/start" * 20)  # name is cut to the column
        assert selectors.active_user_counts() == {"dau": 1, "wau": 1, "mau": 1}

    def test_user_counts(self):
        TelegramUserFactory(is_banned=True)
        TelegramUserFactory(auto_trading_enabled=True)
        TelegramUserFactory()
        assert selectors.user_counts() == {"total": 3, "active": 2, "banned": 1, "auto_trading": 1}


class TestSignalPerformance:
    def test_overall_and_breakdowns(self):
        btc, eth = SymbolFactory(symbol="BTC/USDT:USDT"), SymbolFactory(symbol="ETH/USDT:USDT")
        closed_signal(pnl="2.0", symbol=btc, risk="low", closed_at=datetime(2026, 2, 10, tzinfo=UTC))
        closed_signal(pnl="-1.0", symbol=btc, risk="high")
        closed_signal(pnl="4.0", symbol=eth, source=Signal.Source.NEWS, risk="low")
        SignalFactory(symbol=eth)  # open: counted apart, not in the win rate

        result = selectors.signal_performance()

        assert (result["open"], result["closed"], result["wins"], result["losses"]) == (1, 3, 2, 1)
        assert result["win_rate"] == pytest.approx(0.6667, abs=1e-4)
        assert result["average_pnl_pct"] == "1.6667"
        by_symbol = {row["key"]: row for row in result["by_symbol"]}
        assert by_symbol["BTC/USDT:USDT"]["win_rate"] == 0.5
        assert by_symbol["BTC/USDT:USDT"]["average_pnl_pct"] == "0.5000"
        assert by_symbol["ETH/USDT:USDT"]["wins"] == 1
        by_source = {row["key"]: row["signals"] for row in result["by_source"]}
        assert by_source == {"news": 1, "technical": 2}
        by_risk = {row["key"]: (row["wins"], row["losses"]) for row in result["by_risk_level"]}
        assert by_risk == {"high": (0, 1), "low": (2, 0)}
        by_month = {row["key"]: row["signals"] for row in result["by_month"]}
        assert by_month == {"2026-02": 1, "2026-03": 2}

    def test_since_filters_by_creation_and_empty_is_safe(self):
        old = closed_signal(pnl="1")
        Signal.objects.filter(pk=old.pk).update(created_at=NOW - timedelta(days=60))
        result = selectors.signal_performance(since=NOW - timedelta(days=30))
        assert result["closed"] == 0 and result["win_rate"] is None and result["average_pnl_pct"] is None
        assert result["by_symbol"] == []


class TestAssetAndModePerformance:
    def test_asset_performance_nets_fees_and_funding(self):
        btc, sol = SymbolFactory(symbol="BTC/USDT:USDT"), SymbolFactory(symbol="SOL/USDT:USDT")
        closed_position(symbol=btc, realised="100", fees="2", funding="1")  # net +97
        closed_position(symbol=btc, realised="1", fees="2", funding="0")  # net −1: a loss once fees are paid
        closed_position(symbol=sol, realised="-50", fees="1", funding="-0.5")  # net −50.5
        PositionFactory(signal=SignalFactory(symbol=sol))  # open: ignored

        rows = {row["key"]: row for row in selectors.asset_performance()}

        assert rows["BTC/USDT:USDT"] == {
            "key": "BTC/USDT:USDT",
            "trades": 2,
            "wins": 1,
            "losses": 1,
            "win_rate": 0.5,
            "net_pnl": "96.00",
            "fees": "4.00",
            "funding": "1.00",
            "average_net_pnl": "48.00",
        }
        assert rows["SOL/USDT:USDT"]["net_pnl"] == "-50.50" and rows["SOL/USDT:USDT"]["win_rate"] == 0.0

    def test_paper_vs_live(self):
        symbol = SymbolFactory()
        closed_position(symbol=symbol, realised="10", mode="paper")
        closed_position(symbol=symbol, realised="-5", mode="live")
        closed_position(symbol=symbol, realised="7", mode="live")
        PositionFactory(signal=SignalFactory(symbol=symbol), mode="live", exchange="okx")

        result = selectors.trading_results_by_mode()

        assert result["paper"]["trades"] == 1 and result["paper"]["net_pnl"] == "10.00" and result["paper"]["open"] == 0
        assert result["live"]["trades"] == 2 and result["live"]["wins"] == 1 and result["live"]["open"] == 1
        assert result["live"]["net_pnl"] == "2.00"

    def test_no_trades_gives_zero_rows_for_both_modes(self):
        result = selectors.trading_results_by_mode()
        assert result["paper"]["trades"] == 0 and result["live"]["net_pnl"] == "0.00"


class TestSubscriptions:
    def test_current_subscribers_and_revenue(self):
        now = timezone.now()
        paying = TelegramUserFactory()
        pro = PlanFactory()
        SubscriptionFactory(user=paying, plan=pro, valid_until=now + timedelta(days=10))
        SubscriptionFactory(source=Subscription.Source.SOLANA, external_id=None, valid_until=now + timedelta(days=3))
        SubscriptionFactory(source=Subscription.Source.ADMIN, external_id=None, valid_until=None)  # open-ended grant
        SubscriptionFactory(valid_until=now - timedelta(days=1))  # lapsed
        SubscriptionFactory(status=Subscription.Status.EXPIRED)
        PaymentFactory(user=paying, amount_base_units=2999, paid_at=now - timedelta(days=1))
        PaymentFactory(amount_base_units=2999, paid_at=now - timedelta(days=90))
        PaymentFactory(
            gateway=Payment.Gateway.SOLANA, amount_base_units=25_000_000, decimals=6, currency="USDC", paid_at=now
        )
        PaymentFactory(
            gateway=Payment.Gateway.SOLANA,
            status=Payment.Status.PENDING,
            amount_base_units=99_000_000,
            decimals=6,
            currency="USDC",
            external_id=None,
        )
        PaymentFactory(status=Payment.Status.REFUNDED, amount_base_units=5000, paid_at=now)

        stats = selectors.subscription_stats(now=now)

        assert stats["active"] == 3
        assert stats["by_source"] == {"whop": 1, "solana": 1, "admin": 1}
        assert stats["by_plan"] == {"Pro": 3}
        assert stats["revenue_total"] == {"USD": "59.98", "USDC": "25.00"}  # pending and refunded are not revenue
        assert stats["revenue_recent"] == {"USD": "29.99", "USDC": "25.00"}
        assert stats["revenue_by_plan"] == [
            {"plan": "Pro", "gateway": "solana", "currency": "USDC", "payments": 1, "amount": "25", "refunded": 0},
            {"plan": "Pro", "gateway": "whop", "currency": "USD", "payments": 2, "amount": "59.98", "refunded": 1},
        ]
        assert stats["by_status"]["expired"] == 1


class TestOverviewSnapshotAndHealth:
    def test_overview_is_json_and_snapshot_is_idempotent_per_day(self):
        import json

        closed_signal(pnl="1")
        UserActivityFactory()
        overview = selectors.analytics_overview()
        json.dumps(overview)  # serialisable as it is
        assert overview["users"]["dau"] == 1 and overview["signals"]["closed"] == 1

        first = services.analytics_snapshot_create()
        UserActivityFactory()
        second = services.analytics_snapshot_create()
        assert first.pk == second.pk and AnalyticsSnapshot.objects.count() == 1
        assert second.data["users"]["dau"] == 2
        assert list(selectors.analytics_snapshot_list()) == [second]

    def test_auto_trading_switch(self, django_user_model):
        operator = django_user_model.objects.create_user("op", is_staff=True)
        assert selectors.auto_trading_globally_paused() is False
        services.auto_trading_global_set(paused=True, actor=operator, reason="exchange outage")
        assert selectors.auto_trading_globally_paused() is True
        assert SystemSetting.objects.get(key=SystemSetting.AUTO_TRADING_PAUSED).value is True
        services.auto_trading_global_set(paused=False, actor=operator)
        assert selectors.auto_trading_globally_paused() is False

    def test_system_health(self, settings):
        from signals.models import ScanRun

        settings.CELERY_TASK_ALWAYS_EAGER = True
        HeartbeatFactory(name="worker", beat_at=timezone.now() - timedelta(seconds=30))
        ScanRun.objects.create(
            source="replay", scan_time=timezone.now(), finished_at=timezone.now() - timedelta(minutes=2)
        )
        WebhookEventFactory(status=WebhookEvent.Status.FAILED)
        WebhookEventFactory()
        old = timezone.now() - timedelta(minutes=5)
        OutboxEvent.objects.create(event="user.notify", payload={}, created_at=old, due_at=old, attempts=3)
        OutboxEvent.objects.create(event="user.notify", payload={})  # just published: its dispatch is under way

        health = selectors.system_health()

        assert health["heartbeat_fresh"] is True and 29 <= health["heartbeat_age_seconds"] < 60
        assert 100 < health["last_scan_age_seconds"] < 200
        assert health["webhooks_failed"] == 1
        assert health["events_waiting"] == 1
        assert health["queue_lengths"] is None  # eager mode: no broker to ask
        assert health["auto_trading_paused"] is False

    def test_stale_heartbeat_is_reported(self, settings):
        assert selectors.heartbeat_age_seconds() is None
        HeartbeatFactory(
            name="worker", beat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_MAX_AGE_SECONDS + 5)
        )
        assert selectors.system_health()["heartbeat_fresh"] is False

    @pytest.mark.redis
    def test_queue_lengths_read_from_a_real_redis_broker(self, settings, redis_url):
        import redis

        settings.CELERY_TASK_ALWAYS_EAGER = False
        settings.CELERY_BROKER_URL = redis_url
        settings.CELERY_TASK_QUEUES_NAMES = ("test-web-q",)
        client = redis.Redis.from_url(redis_url)
        client.delete("test-web-q")
        client.rpush("test-web-q", "a", "b")
        try:
            assert selectors.celery_queue_lengths() == {"test-web-q": 2}
        finally:
            client.delete("test-web-q")


def test_daily_snapshot_task_is_scheduled_and_snapshots(settings):
    from analytics.tasks import analytics_snapshot

    entry = settings.CELERY_BEAT_SCHEDULE["analytics-snapshot"]
    assert entry["task"] == analytics_snapshot.name
    UserActivityFactory()
    day = analytics_snapshot.run()
    assert AnalyticsSnapshot.objects.get(day=day).data["users"]["dau"] == 1
