"""PnL selectors: today/week/month in the user's timezone, win rate, average R, best/worst, unrealised, equity."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import FundingSnapshotFactory, SignalFactory
from trading import ledger, selectors, services
from trading.executors.paper import PaperExecutor
from trading.models import PaperAccount

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]


def _trade(market, user, *, opened: datetime, closed: datetime | None, exit_price: str, side="long", reason="manual"):
    """A paper trade at a last price of 100 (fills 100.1 long / 99.9 short), closed manually at ``exit_price``."""
    kwargs = {} if side == "long" else {"side": "short", "stop": D("102"), "tp1": D("98"), "tp2": D("96")}
    signal = SignalFactory(**kwargs)
    market.prices[signal.symbol.symbol] = D("100")
    market.clock = opened
    position = services.signal_execute_for_user(user=user, signal=signal)
    if closed is not None:
        market.clock = closed
        position = PaperExecutor(user=user, slippage=D(0)).close_position(
            position=position, reason=reason, price=D(exit_price)
        )
    return position


def test_period_bounds_follow_the_users_timezone():
    now = datetime(2026, 1, 7, 2, 0, tzinfo=UTC)  # Wednesday 02:00 UTC = Wednesday 11:00 in Tokyo
    tokyo = selectors.user_zone(TelegramUserFactory.build(timezone="Asia/Tokyo"))
    assert selectors.period_bounds(period="today", now=now, zone=tokyo)[0] == datetime(2026, 1, 6, 15, tzinfo=UTC)
    assert selectors.period_bounds(period="week", now=now, zone=tokyo)[0] == datetime(2026, 1, 4, 15, tzinfo=UTC)
    assert selectors.period_bounds(period="month", now=now, zone=tokyo)[0] == datetime(2025, 12, 31, 15, tzinfo=UTC)
    utc = selectors.user_zone(TelegramUserFactory.build(timezone="Not/AZone"))  # unknown -> UTC
    assert selectors.period_bounds(period="today", now=now, zone=utc)[0] == datetime(2026, 1, 7, tzinfo=UTC)
    assert selectors.period_bounds(period="all", now=now, zone=utc) == (None, now)
    with pytest.raises(ValueError):
        selectors.period_bounds(period="year", now=now, zone=utc)


def test_a_trade_closed_before_utc_midnight_is_today_in_tokyo_not_in_utc(market):
    closed_at = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # Jan 7 01:00 in Tokyo
    now = datetime(2026, 1, 7, 2, 0, tzinfo=UTC)
    tokyo = TelegramUserFactory(auto_trading_enabled=True, timezone="Asia/Tokyo")
    utc = TelegramUserFactory(auto_trading_enabled=True, timezone="UTC")
    for user in (tokyo, utc):
        _trade(market, user, opened=closed_at - timedelta(hours=1), closed=closed_at, exit_price="102")
    assert selectors.pnl_summary(user=tokyo, period="today", now=now).trades == 1
    assert selectors.pnl_summary(user=tokyo, period="today", now=now, utc=True).trades == 0
    assert selectors.pnl_summary(user=tokyo, period="today", now=now, mode="live").trades == 0
    assert selectors.pnl_summary(user=utc, period="today", now=now).trades == 0
    assert selectors.pnl_summary(user=utc, period="week", now=now).trades == 1


def test_summary_numbers_by_hand(market):
    user = TelegramUserFactory(auto_trading_enabled=True)
    user.preferences.max_open_positions = 10
    user.preferences.correlation_filter = False
    user.preferences.save()
    day = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)  # a Wednesday
    # win: long 25 @ 100.1 -> 104.1 : +100 gross
    win = _trade(market, user, opened=day, closed=day + timedelta(hours=1), exit_price="104.1")
    # loss: short 25 @ 99.9 -> 101.9 : -50 gross
    loss = _trade(market, user, opened=day, closed=day + timedelta(hours=2), exit_price="101.9", side="short")
    # last week's trade (Monday of the previous week) and one still open
    old = _trade(
        market, user, opened=day - timedelta(days=8), closed=day - timedelta(days=8, hours=-1), exit_price="90"
    )
    still_open = _trade(market, user, opened=day, closed=None, exit_price="0")
    now = day + timedelta(hours=3)
    market.clock = now
    market.prices[still_open.symbol.symbol] = D("101.1")

    # sizing follows the balance, so each trade has its own quantity (5 % x 5 of the balance at its entry)
    assert win.quantity == 25 and loss.quantity == D("25.243")  # 10 097.4475 x 0.25 / 100, floored
    qw, ql, qo = win.quantity, loss.quantity, still_open.quantity
    s = selectors.pnl_summary(user=user, period="today", now=now)
    fees_win = D("100.1") * qw * D("0.0005") + D("104.1") * qw * D("0.0005")
    fees_loss = D("99.9") * ql * D("0.0005") + D("101.9") * ql * D("0.0005")
    open_fee = D("100.1") * qo * D("0.0005")
    assert (s.trades, s.wins, s.losses, s.win_rate) == (2, 1, 1, D("0.5"))
    assert s.realised == D("4") * qw - D("2") * ql
    assert s.fees == fees_win + fees_loss + open_fee  # the open position's entry fee counts today too
    assert s.funding == 0
    assert s.net == s.realised - s.fees
    assert s.unrealised == (D("101.1") - D("100.1")) * qo
    net_win, net_loss = D("4") * qw - fees_win, D("-2") * ql - fees_loss
    assert (s.best, s.worst) == (net_win, net_loss)
    # R = net / (|entry - initial stop| x qty): long 100.1 vs 98, short 99.9 vs 102 -> 2.1 per unit both
    r_win, r_loss = net_win / (D("2.1") * qw), net_loss / (D("2.1") * ql)
    assert s.average_r == (r_win + r_loss) / 2
    assert selectors.position_r_multiple(position=win) == r_win
    loss.refresh_from_db()
    assert loss.net_pnl == net_loss

    week = selectors.pnl_summary(user=user, period="week", now=now)
    assert week.trades == 2  # last week's trade is outside
    everything = selectors.pnl_summary(user=user, period="all", now=now)
    assert everything.trades == 3 and everything.realised == s.realised + (D("90") - D("100.1")) * old.quantity
    # the net of "all" is exactly what the paper account lost or won
    assert PaperAccount.objects.get(user=user).balance == D("10000") + everything.net


def test_funding_is_counted_in_the_period_it_was_charged(market, settings):
    user = TelegramUserFactory(auto_trading_enabled=True)
    opened = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
    position = _trade(market, user, opened=opened, closed=None, exit_price="0")
    FundingSnapshotFactory(
        symbol=position.symbol,
        exchange=settings.MARKET_DATA_EXCHANGE,
        rate=D("0.0002"),
        funding_time=opened.replace(hour=16),
        mark_price=D("100"),
    )
    assert ledger.funding_charge_due(now=opened + timedelta(hours=5)) == 1
    s = selectors.pnl_summary(user=user, period="today", now=opened + timedelta(hours=5))
    assert s.funding == D("100") * 25 * D("0.0002") == D("0.5")
    assert s.net == s.realised - s.fees - s.funding
    tomorrow = selectors.pnl_summary(user=user, period="today", now=opened + timedelta(days=1))
    assert tomorrow.funding == 0


def test_equity_curve_ends_at_the_balance_and_lists_every_cash_event(market):
    user = TelegramUserFactory(auto_trading_enabled=True)
    day = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    _trade(market, user, opened=day, closed=day + timedelta(hours=1), exit_price="104.1")
    curve = selectors.equity_curve(user=user)
    assert [p.equity for p in curve] == [
        D("10000"),
        D("10000") - D("1.25125"),
        D("10000") - D("1.25125") + D("100") - D("1.30125"),
    ]
    assert curve[-1].equity == PaperAccount.objects.get(user=user).balance
    moments = [p.at for p in curve]
    assert moments == sorted(moments) and moments[0] == day  # on the market clock, even when it is the past
    assert selectors.equity_curve(user=TelegramUserFactory()) == []


def test_pnl_table_rows_match_the_summaries(market):
    a = TelegramUserFactory(auto_trading_enabled=True, username="alice")
    b = TelegramUserFactory(auto_trading_enabled=True, username="bob")
    day = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    _trade(market, a, opened=day, closed=day + timedelta(hours=1), exit_price="104.1")
    rows = selectors.pnl_table(users=[a, b], now=day + timedelta(hours=2))
    assert [(r.trades, r.wins, r.open_positions) for r in rows] == [(1, 1, 0), (0, 0, 0)]
    assert rows[0].net == D("100") - D("1.25125") - D("1.30125") and rows[1].balance is None
    text = selectors.pnl_table_text(rows)
    assert "97.45" in text and "100.0%" in text


def test_position_list_open_lists_only_open_positions(market):
    user = TelegramUserFactory(auto_trading_enabled=True)
    user.preferences.correlation_filter = False
    user.preferences.save()
    day = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    _trade(market, user, opened=day, closed=day + timedelta(hours=1), exit_price="101")  # a closed one is not listed
    open_ = _trade(market, user, opened=day + timedelta(hours=2), closed=None, exit_price="0")
    assert list(selectors.position_list_open(user=user)) == [open_]
