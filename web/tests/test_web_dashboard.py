"""The users' web dashboard: one-time login links, the Telegram Login Widget check, pages, the settings form (the same
validator as the bot), activity recording."""

import hashlib
import hmac
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.login_links import TelegramLoginError, login_link_create, login_token_consume, telegram_login_verify
from accounts.models import LoginToken, UserPreferences
from accounts.tests.factories import SubscriptionFactory, TelegramUserFactory
from analytics.models import UserActivity
from signals.models import Signal
from signals.tests.factories import SignalFactory, SymbolFactory
from trading.models import Position
from trading.tests.factories import PositionFactory

pytestmark = pytest.mark.django_db

BOT_TOKEN = "123456:TEST-token-for-the-login-widget"


def widget_data(bot_token=BOT_TOKEN, **fields):
    data = {"id": "4242", "first_name": "Ada", "username": "ada", "auth_date": str(int(time.time())), **fields}
    check = "\n".join(f"{k}={data[k]}" for k in sorted(data))
    data["hash"] = hmac.new(hashlib.sha256(bot_token.encode()).digest(), check.encode(), hashlib.sha256).hexdigest()
    return data


@pytest.fixture
def logged_in(client):
    user = TelegramUserFactory()
    token = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
    client.post(reverse("dashboard:login-link", args=[token]))
    return client, user


class TestLoginLink:
    def test_get_shows_a_button_and_post_logs_in_once(self, client):
        user = TelegramUserFactory()
        url = login_link_create(user=user)
        assert url.startswith("/dashboard/login/link/")
        assert LoginToken.objects.get().token_hash != url.rsplit("/", 2)[-2]  # only the hash is stored
        page = client.get(url)
        assert page.status_code == 200 and b"login-continue" in page.content
        assert client.get(reverse("dashboard:pnl")).status_code == 302  # GET did not log in (link previews)

        response = client.post(url)
        assert response.status_code == 302 and response["Location"] == reverse("dashboard:pnl")
        assert client.get(reverse("dashboard:pnl")).status_code == 200
        user.refresh_from_db()
        assert user.web_user.username == f"tg{user.telegram_id}" and not user.web_user.has_usable_password()

        client.logout()
        again = client.post(url, follow=True)
        assert b"invalid, used or expired" in again.content

    def test_expired_and_banned(self):
        user = TelegramUserFactory()
        token = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
        LoginToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        assert login_token_consume(token=token) is None
        banned = TelegramUserFactory(is_banned=True)
        token = login_link_create(user=banned).rstrip("/").rsplit("/", 1)[-1]
        assert login_token_consume(token=token) is None
        assert login_token_consume(token="x" * 500) is None


class TestTelegramWidget:
    def test_valid_data_logs_in_and_registers(self, client, settings):
        settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
        response = client.get(reverse("dashboard:login-telegram"), widget_data())
        assert response.status_code == 302 and response["Location"] == reverse("dashboard:pnl")
        assert client.get(reverse("dashboard:pnl")).status_code == 200

    def test_hash_made_with_another_bot_token_is_rejected(self, settings):
        with pytest.raises(TelegramLoginError, match="could not be verified"):
            telegram_login_verify(data=widget_data(bot_token="999:other"), bot_token=BOT_TOKEN)

    def test_changed_field_is_rejected(self):
        data = widget_data()
        data["id"] = "1"
        with pytest.raises(TelegramLoginError):
            telegram_login_verify(data=data, bot_token=BOT_TOKEN)

    def test_stale_auth_date_is_rejected(self, client, settings):
        settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
        stale = widget_data(auth_date=str(int(time.time()) - 2 * 86_400))
        with pytest.raises(TelegramLoginError, match="expired"):
            telegram_login_verify(data=stale, bot_token=BOT_TOKEN)
        response = client.get(reverse("dashboard:login-telegram"), stale, follow=True)
        assert b"expired" in response.content
        assert client.get(reverse("dashboard:pnl")).status_code == 302

    def test_unconfigured_server_refuses(self, settings):
        with pytest.raises(TelegramLoginError, match="not configured"):
            telegram_login_verify(data=widget_data(), bot_token="")


class TestPages:
    def test_anonymous_is_sent_to_login(self, client):
        for name in ("pnl", "positions", "signals", "settings"):
            response = client.get(reverse(f"dashboard:{name}"))
            assert response.status_code == 302 and response["Location"].startswith(reverse("dashboard:login"))

    def test_banned_user_is_sent_to_login(self, logged_in):
        client, user = logged_in
        user.is_banned = True
        user.save()
        assert client.get(reverse("dashboard:pnl")).status_code == 302

    @pytest.mark.parametrize("period", ["today", "week", "month", "all"])
    def test_pnl_page_for_each_period(self, logged_in, period):
        client, user = logged_in
        from signals.market_data import get_market_data

        now = get_market_data().now()  # the PnL periods follow the market clock (the replay clock here)
        symbol = SymbolFactory(symbol="BTC/USDT:USDT")
        PositionFactory(
            user=user,
            signal=SignalFactory(symbol=symbol, status=Signal.Status.CLOSED),
            status=Position.Status.CLOSED,
            realised_pnl=Decimal("12.5"),
            fees=Decimal("0.5"),
            opened_at=now - timedelta(minutes=30),
            closed_at=now - timedelta(minutes=5),
        )
        response = client.get(reverse("dashboard:pnl"), {"period": period})
        assert response.status_code == 200
        assert response.context["period"] == period
        summary = response.context["summary"]
        assert summary is not None and summary["trades"] == 1
        assert b'id="pnl-summary"' in response.content
        assert b"100 %" in response.content  # win rate: a 0..1 fraction shown as a percentage

    def test_all_time_counts_trades_older_than_a_month(self, logged_in):
        client, user = logged_in
        from signals.market_data import get_market_data

        now = get_market_data().now()
        for days, pnl in ((1, "10"), (90, "-4")):
            PositionFactory(
                user=user,
                status=Position.Status.CLOSED,
                realised_pnl=Decimal(pnl),
                fees=Decimal("0"),
                opened_at=now - timedelta(days=days, hours=1),
                closed_at=now - timedelta(days=days),
            )
        month = client.get(reverse("dashboard:pnl"), {"period": "month"}).context["summary"]
        every = client.get(reverse("dashboard:pnl"), {"period": "all"}).context["summary"]
        assert every["trades"] == month["trades"] + 1
        assert b"All time" in client.get(reverse("dashboard:pnl"), {"period": "all"}).content

    def test_unknown_period_falls_back_to_today(self, logged_in):
        client, _ = logged_in
        assert client.get(reverse("dashboard:pnl"), {"period": "decade"}).context["period"] == "today"

    def test_positions_page_splits_open_and_closed(self, logged_in):
        client, user = logged_in
        open_position = PositionFactory(user=user, opened_at=timezone.now())
        closed = PositionFactory(
            user=user,
            signal=SignalFactory(status=Signal.Status.CLOSED),
            status=Position.Status.CLOSED,
            realised_pnl=Decimal("-3"),
            closed_at=timezone.now(),
        )
        PositionFactory()  # someone else's
        response = client.get(reverse("dashboard:positions"))
        assert [p.pk for p in response.context["open_positions"]] == [open_position.pk]
        assert [p.pk for p in response.context["recent_positions"]] == [closed.pk]
        assert f'data-position-id="{open_position.pk}"'.encode() in response.content

    def test_signal_history_shows_outcomes(self, logged_in):
        client, _ = logged_in
        SignalFactory(
            symbol=SymbolFactory(symbol="ETH/USDT:USDT"),
            status=Signal.Status.CLOSED,
            outcome="tp2",
            outcome_pnl_pct=Decimal("3.2"),
            closed_at=timezone.now(),
        )
        page = client.get(reverse("dashboard:signals")).content.decode()
        assert "ETH/USDT:USDT" in page and "tp2" in page and "3.20" in page

    def test_each_visit_is_recorded_as_activity(self, logged_in):
        client, user = logged_in
        client.get(reverse("dashboard:pnl"))
        client.get(reverse("dashboard:signals"))
        names = list(UserActivity.objects.filter(user=user, kind="dashboard").values_list("name", flat=True))
        assert names == ["pnl", "signals"]

    def test_pages_load_the_live_updates_script(self, logged_in):
        client, _ = logged_in
        page = client.get(reverse("dashboard:positions")).content.decode()
        assert "live.js" in page and 'data-live-url="/ws/live/"' in page


class TestSettingsForm:
    def form_data(self, **overrides):
        data = {
            "paper_mode": "on",
            "sizing_mode": "percent",
            "position_size_pct": "5",
            "risk_per_trade_pct": "1",
            "leverage": "5",
            "max_open_positions": "3",
            "daily_loss_limit_pct": "5",
            "max_drawdown_pct": "20",
            "accepted_risk_levels": ["low", "medium"],
            "muted_symbols": "doge/usdt:usdt, PEPE/USDT:USDT",
            "default_pnl_period": "week",
            "dm_alerts": "on",
        }
        data.update(overrides)
        return {k: v for k, v in data.items() if v is not None}

    def test_saves_through_the_shared_validator(self, logged_in):
        client, user = logged_in
        response = client.post(reverse("dashboard:settings"), self.form_data())
        assert response.status_code == 302, response.context["form"].errors
        prefs = UserPreferences.objects.get(user=user)
        assert prefs.leverage == 5 and prefs.position_size_pct == Decimal("5")
        assert prefs.accepted_risk_levels == ["low", "medium"]
        assert prefs.muted_symbols == ["DOGE/USDT:USDT", "PEPE/USDT:USDT"]
        assert prefs.default_pnl_period == "week" and prefs.dm_alerts and not prefs.news_signals
        page = client.get(reverse("dashboard:settings")).content.decode()
        assert "Settings saved" in page

    def test_leverage_above_the_cap_is_shown_on_its_field_and_nothing_is_saved(self, logged_in, settings):
        client, user = logged_in
        before = UserPreferences.objects.get(user=user).leverage
        response = client.post(reverse("dashboard:settings"), self.form_data(leverage=str(settings.MAX_LEVERAGE + 1)))
        assert response.status_code == 200
        assert response.context["form"].errors["leverage"] == [
            f"Leverage must be a whole number from 1x to {settings.MAX_LEVERAGE}x."
        ]
        assert UserPreferences.objects.get(user=user).leverage == before

    @pytest.mark.parametrize("value", ["1e1000000", "9" * 5000, "NaN", "-Infinity", "0x10", "1_0"])
    def test_a_hostile_number_is_refused_at_once_with_the_allowed_range(self, logged_in, settings, value):
        client, user = logged_in
        settings.MAX_LEVERAGE = 20
        started = time.perf_counter()
        response = client.post(reverse("dashboard:settings"), self.form_data(leverage=value, max_drawdown_pct=value))
        assert time.perf_counter() - started < 2.0
        errors = response.context["form"].errors
        assert "Leverage must be a whole number from 1x to 20x." in errors["leverage"]
        assert "Max drawdown must be a number from 1% to 100%." in errors["max_drawdown_pct"]  # one message
        assert UserPreferences.objects.get(user=user).leverage == 5

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("position_size_pct", "abc"),
            ("sizing_mode", "yolo"),
            ("accepted_risk_levels", ["extreme"]),
            ("leverage", ""),
        ],
    )
    def test_malformed_input_is_a_form_error(self, logged_in, field, value):
        client, _ = logged_in
        response = client.post(reverse("dashboard:settings"), self.form_data(**{field: value}))
        assert response.status_code == 200 and field in response.context["form"].errors

    def test_csrf_is_enforced(self, settings):
        from django.test import Client

        strict = Client(enforce_csrf_checks=True)
        user = TelegramUserFactory()
        token = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
        assert strict.post(reverse("dashboard:login-link", args=[token])).status_code == 403

    def test_api_token_is_created_and_shown_once(self, logged_in):
        client, _ = logged_in
        first = client.post(reverse("dashboard:api-token"), follow=True).context["new_api_token"]
        assert first and len(first) == 40
        assert client.get(reverse("dashboard:settings")).context["new_api_token"] is None
        second = client.post(reverse("dashboard:api-token"), follow=True).context["new_api_token"]
        assert second != first


def test_settings_form_shows_decimals_plainly(logged_in):
    client, user = logged_in
    UserPreferences.objects.filter(user=user).update(
        position_size_pct=Decimal("10.0000"), risk_per_trade_pct=Decimal("0.5")
    )
    form = client.get(reverse("dashboard:settings")).context["form"]
    assert form.initial["position_size_pct"] == "10" and form.initial["risk_per_trade_pct"] == "0.5"


def test_equity_chart_coordinates():
    from datetime import UTC, datetime

    from web.dashboard.data import equity_svg

    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(start, 100.0), (start + timedelta(hours=1), 120.0), (start + timedelta(hours=2), 110.0)]
    chart = equity_svg(points, width=100, height=50)
    coords = [tuple(map(float, pair.split(","))) for pair in chart["points"].split()]
    assert coords[0] == (8.0, 42.0) and coords[1] == (50.0, 8.0) and coords[2] == (92.0, 25.0)  # high at the top
    assert chart["rising"] and (chart["low"], chart["high"], chart["last"]) == (100.0, 120.0, 110.0)
    assert equity_svg(points[:1]) is None


def test_pnl_page_draws_the_equity_curve_of_paper_fills(logged_in):
    from trading.models import Fill, PaperAccount
    from trading.tests.factories import OrderFactory

    client, user = logged_in
    PaperAccount.objects.create(
        user=user, starting_balance=Decimal("10000"), balance=Decimal("10150"), peak_equity=Decimal("10150")
    )
    order = OrderFactory(position=PositionFactory(user=user))
    start = timezone.now() - timedelta(hours=3)
    for n, pnl in enumerate(["0", "200", "-50"]):
        Fill.objects.create(
            order=order,
            position=order.position,
            trade_id=f"t{n}",
            price=Decimal("100"),
            quantity=Decimal("1"),
            realised_pnl=Decimal(pnl),
            filled_at=start + timedelta(hours=n),
        )
    response = client.get(reverse("dashboard:pnl"))
    assert response.context["curve_points"] >= 3
    chart = response.context["chart"]
    assert (chart["low"], chart["high"], chart["last"]) == (10000.0, 10200.0, 10150.0)
    assert b"<polyline" in response.content


class TestAutoTradingCard:
    """The dashboard says whether auto-trading is on, why it is paused or off, and offers the one action."""

    def test_a_drawdown_pause_offers_resume_and_the_button_resumes(self, logged_in):
        from accounts.models import TelegramUser

        client, user = logged_in
        TelegramUser.objects.filter(pk=user.pk).update(
            auto_trading_enabled=True, auto_trading_paused_reason="max drawdown reached: 22%"
        )
        page = client.get(reverse("dashboard:pnl")).content.decode()
        assert 'id="auto-trading-state">paused<' in page and "Paused: max drawdown reached: 22%." in page
        assert "Resume auto-trading" in page and "Switch auto-trading on" not in page
        response = client.post(reverse("dashboard:auto-trading-resume"), {"next": "/dashboard/"})
        assert response.status_code == 302
        user.refresh_from_db()
        assert user.auto_trading_paused_reason == "" and user.auto_trading_enabled
        assert 'id="auto-trading-state">on<' in client.get(reverse("dashboard:pnl")).content.decode()

    def test_an_exchange_refusal_offers_switch_on_and_switching_on_checks_what_is_missing(self, logged_in):
        from accounts.models import TelegramUser

        client, user = logged_in
        TelegramUser.objects.filter(pk=user.pk).update(
            auto_trading_enabled=False, auto_trading_paused_reason="InsufficientFunds: margin"
        )
        page = client.get(reverse("dashboard:settings")).content.decode()
        assert 'id="auto-trading-state">off<' in page and "Off: InsufficientFunds: margin." in page
        assert "Switch auto-trading on" in page
        SubscriptionFactory(user=user, source="admin", external_id=None)  # a plan with live trading
        UserPreferences.objects.filter(user=user).update(paper_mode=False)  # live, but no exchange connected
        client.post(reverse("dashboard:auto-trading"), {"on": "1"})
        page = client.get(reverse("dashboard:pnl")).content.decode()
        assert "Auto-trading cannot be switched on yet: live trading needs a connected exchange" in page
        user.refresh_from_db()
        assert not user.auto_trading_enabled
        UserPreferences.objects.filter(user=user).update(paper_mode=True)
        client.post(reverse("dashboard:auto-trading"), {"on": "1"})
        user.refresh_from_db()
        assert user.auto_trading_enabled and user.auto_trading_paused_reason == ""

    def test_the_settings_form_shows_each_bound_and_switches_auto_trading(self, logged_in, settings):
        client, _user = logged_in
        page = client.get(reverse("dashboard:settings")).content.decode()
        assert f"From 1x to {settings.MAX_LEVERAGE}x" in page and "From 0.1% to 100%" in page
        assert 'name="auto_trading"' in page


def test_settings_form_shows_every_wrong_field_at_once_and_saves_nothing(logged_in, settings):
    client, user = logged_in
    from web.dashboard.forms import PreferencesForm

    data = {
        k: (str(v) if not isinstance(v, list) else v)
        for k, v in PreferencesForm.initial_from(UserPreferences.objects.get(user=user)).items()
        if not isinstance(v, bool)
    }
    data.update({"leverage": "999", "position_size_pct": "lots", "max_open_positions": "0"})
    page = client.post(reverse("dashboard:settings"), data)
    errors = page.context["form"].errors
    assert errors["leverage"] == [f"Leverage must be a whole number from 1x to {settings.MAX_LEVERAGE}x."]
    assert errors["max_open_positions"] == ["Max open positions must be a whole number from 1 to 50."]
    assert errors["position_size_pct"] == ["Position size must be a number from 0.1% to 100%."]
    html = page.content.decode()
    assert html.index("Signal risk levels to trade") < html.index('value="low"')  # the label above its boxes
    prefs = UserPreferences.objects.get(user=user)
    assert prefs.leverage == 5 and prefs.max_open_positions == 3  # nothing saved
