"""Every risk rule refuses on its own (one test each), the refusal is recorded with its reason and notified once."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from signals.tests.factories import SignalFactory, SymbolFactory
from trading import orders, services
from trading.models import DailyRiskState, PaperAccount, Position, TradeRefusal
from trading.tests.factories import PositionFactory
from trading.tests.paper_fixtures import T0

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]


def _user(**prefs):
    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
    for k, v in prefs.items():
        setattr(user.preferences, k, v)
    user.preferences.save()
    return user


def _signal(market, **kwargs):
    signal = SignalFactory(**kwargs)
    market.prices[signal.symbol.symbol] = Decimal("100")
    return signal


def _assert_refused_once(user, signal, reason, published):
    result = services.signal_execute_for_user(user=user, signal=signal)
    assert isinstance(result, TradeRefusal) and result.reason == reason and result.notified
    # the same signal again (a redelivered task): no second refusal, no second message, no position
    assert services.signal_execute_for_user(user=user, signal=signal) is None
    assert TradeRefusal.objects.filter(user=user, signal=signal).count() == 1
    notes = [p for e, p in published if e == "user.notify"]
    assert len(notes) == 1
    assert notes[0]["user_id"] == user.pk and notes[0]["dedupe_key"] == f"refusal:{user.pk}:{signal.pk}"
    assert not Position.objects.filter(user=user, signal=signal).exists()
    return notes[0]


def test_global_pause_refuses(market, published):
    services.trading_pause(reason="exchange maintenance")
    user, signal = _user(), _signal(market)
    note = _assert_refused_once(user, signal, "global_pause", published)
    assert "exchange maintenance" in note["text"]
    services.trading_resume()
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market)), Position)


def test_user_pause_refuses(market, published):
    user = _user()
    services.user_auto_trading_pause(user=user, reason="paused by admin")
    _assert_refused_once(user, _signal(market), "user_paused", published)


def test_max_open_positions_refuses(market, published):
    user = _user(max_open_positions=1, correlation_filter=False)
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market)), Position)
    _assert_refused_once(user, _signal(market), "max_positions", published)


def test_risk_level_not_accepted_refuses(market, published):
    user = _user(accepted_risk_levels=["low"])
    _assert_refused_once(user, _signal(market, risk_level="high"), "risk_level", published)


def test_muted_symbol_refuses(market, published):
    symbol = SymbolFactory(symbol="DOGE/USDT:USDT")
    user = _user(muted_symbols=["DOGE/USDT:USDT"])
    _assert_refused_once(user, _signal(market, symbol=symbol), "muted_symbol", published)


@pytest.mark.parametrize(("source", "pref"), [("news", "news_signals"), ("flow", "flow_signals")])
def test_disabled_signal_source_refuses(market, published, source, pref):
    user = _user(**{pref: False})
    _assert_refused_once(user, _signal(market, source=source), "source_disabled", published)


def test_correlation_filter_refuses_same_sector(market, published):
    user = _user()
    doge = SymbolFactory(symbol="DOGE/USDT:USDT", base="DOGE")
    shib = SymbolFactory(symbol="SHIB/USDT:USDT", base="SHIB")
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market, symbol=doge)), Position)
    _assert_refused_once(user, _signal(market, symbol=shib), "correlated", published)


def test_correlation_filter_off_allows_same_sector(market):
    user = _user(correlation_filter=False)
    doge = SymbolFactory(symbol="DOGE/USDT:USDT", base="DOGE")
    shib = SymbolFactory(symbol="SHIB/USDT:USDT", base="SHIB")
    services.signal_execute_for_user(user=user, signal=_signal(market, symbol=doge))
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market, symbol=shib)), Position)


@pytest.mark.parametrize("second", [{"side": "short"}, {"side": "long", "source": "news"}])
def test_one_position_per_symbol_even_without_the_correlation_filter(market, published, second):
    """A long and a short on one symbol would net out on a one-way exchange account: the second is refused."""
    user = _user(correlation_filter=False, news_signals=True)
    eth = SymbolFactory(symbol="ETH/USDT:USDT", base="ETH")
    assert isinstance(
        services.signal_execute_for_user(user=user, signal=_signal(market, symbol=eth, side="long")), Position
    )
    note = _assert_refused_once(user, _signal(market, symbol=eth, **second), "symbol_busy", published)
    assert "ETH/USDT:USDT" in note["text"]


def test_daily_loss_limit_refuses_for_the_rest_of_the_utc_day(market, published):
    user = _user(daily_loss_limit_pct=Decimal("2"), correlation_filter=False)
    DailyRiskState.objects.create(user=user, day=T0.date(), start_equity=Decimal("10000"), realised_pnl=Decimal("-200"))
    _assert_refused_once(user, _signal(market), "daily_loss", published)
    assert DailyRiskState.objects.get(user=user, day=T0.date()).loss_limit_hit
    market.clock = T0.replace(hour=0) + timedelta(days=1)  # next UTC day
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market)), Position)


def test_daily_loss_counts_fees_of_real_losing_trades(market):
    user = _user(
        daily_loss_limit_pct=Decimal("0.5"), correlation_filter=False, position_size_pct=Decimal("100"), leverage=1
    )
    signal = _signal(market)
    position = services.signal_execute_for_user(user=user, signal=signal)
    from trading.executors.paper import PaperExecutor

    PaperExecutor(user=user).close_position(position=position, reason="sl", price=Decimal("99.5"))
    state = DailyRiskState.objects.get(user=user, day=T0.date())
    assert state.realised_pnl == PaperAccount.objects.get(user=user).balance - Decimal("10000")
    assert state.realised_pnl < Decimal("-50")  # 0.5 % of 10 000
    assert services.signal_execute_for_user(user=user, signal=_signal(market)).reason == "daily_loss"


def test_max_drawdown_pauses_auto_trading_until_resumed(market, published):
    user = _user(max_drawdown_pct=Decimal("10"), correlation_filter=False)
    PaperAccount.objects.create(
        user=user, starting_balance=Decimal("10000"), balance=Decimal("8900"), peak_equity=Decimal("10000")
    )
    note = _assert_refused_once(user, _signal(market), "drawdown", published)
    assert "11.0% below its peak" in note["text"]
    user.refresh_from_db()
    assert user.auto_trading_paused_reason.startswith("max drawdown reached")
    assert services.signal_execute_for_user(user=user, signal=_signal(market)).reason == "user_paused"
    services.user_auto_trading_resume(user=user)
    user.refresh_from_db()
    assert user.auto_trading_paused_reason == ""
    assert PaperAccount.objects.get(user=user).peak_equity == Decimal("8900")
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market)), Position)


def test_unrealised_loss_counts_towards_drawdown(market, published):
    user = _user(
        max_drawdown_pct=Decimal("5"),
        correlation_filter=False,
        max_open_positions=5,
        position_size_pct=Decimal("100"),
        leverage=10,
    )
    first = _signal(market)
    services.signal_execute_for_user(user=user, signal=first)  # 1 000 units at ~100
    market.prices[first.symbol.symbol] = Decimal("99.4")  # -0.7 per unit = -700 unrealised: 7 % down
    assert services.signal_execute_for_user(user=user, signal=_signal(market)).reason == "drawdown"


def test_size_below_market_minimum_is_refused(market, published):
    user = _user(position_size_pct=Decimal("0.1"), leverage=1)
    _assert_refused_once(user, _signal(market, symbol__min_notional=Decimal("50")), "size", published)


def test_open_positions_of_other_users_do_not_count(market):
    other = _user()
    PositionFactory(user=other)
    user = _user(max_open_positions=1)
    assert isinstance(services.signal_execute_for_user(user=user, signal=_signal(market)), Position)


class _LiveStandIn:
    """What the decision asks a live executor (no exchange call is needed to refuse)."""

    mode = "live"
    exchange = "okx"

    def __init__(self, balance):
        self.balance_calls = 0
        self._balance = balance

    def balance(self):
        self.balance_calls += 1
        return self._balance

    def market_limits(self, *, symbol):
        return orders.market_limits_of(symbol=symbol)

    def now(self):
        return T0


def _live_loss_today(user, loss):
    from trading.models import Fill, Order

    position = PositionFactory(user=user, mode="live", exchange="okx", status="closed", closed_at=T0)
    order = Order.objects.create(
        position=position,
        client_order_id=f"live-loss-{position.pk}",
        exchange="okx",
        leg="sl",
        type="stop_market",
        side="sell",
        quantity=position.quantity,
        state="filled",
    )
    Fill.objects.create(
        order=order,
        position=position,
        trade_id="t1",
        price=Decimal("98"),
        quantity=position.quantity,
        fee=Decimal("1"),
        realised_pnl=-loss,
        filled_at=T0 - timedelta(hours=1),
    )


def test_daily_loss_limit_covers_live_trading(market, published):
    """Live fills of today count against the daily limit, measured on the exchange equity at the day's start."""
    user = _user(daily_loss_limit_pct=Decimal("5"), correlation_filter=False, paper_mode=False)
    ExchangeCredentialFactory(user=user)  # live mode needs a connected exchange (accounts.policy)
    _live_loss_today(user, Decimal("59"))  # -59 - 1 fee = -60 today; exchange equity now 1 000 -> started at 1 060
    executor = _LiveStandIn(balance=Decimal("1000"))
    result = services.position_prepare(user=user, signal=_signal(market), executor=executor, now=T0)
    assert isinstance(result, TradeRefusal) and result.reason == "daily_loss"  # 60 >= 5 % of 1 060 = 53
    assert "today's live loss 60.00" in result.detail


def test_live_daily_loss_below_the_limit_and_no_loss_do_not_refuse(market):
    user = _user(daily_loss_limit_pct=Decimal("10"), correlation_filter=False, paper_mode=False)
    ExchangeCredentialFactory(user=user)
    executor = _LiveStandIn(balance=Decimal("1000"))
    position = services.position_prepare(user=user, signal=_signal(market), executor=executor, now=T0)
    assert isinstance(position, Position) and position.status == "pending" and position.mode == "live"
    _live_loss_today(user, Decimal("59"))  # 60 < 10 % of 1 060
    again = services.position_prepare(user=user, signal=_signal(market), executor=executor, now=T0)
    assert isinstance(again, Position)
