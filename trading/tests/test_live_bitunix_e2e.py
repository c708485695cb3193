"""End to end over real HTTP: LiveExecutor → BitunixClient (real signing, httpx) → the local fake Bitunix server
(checks every signature) → in-memory exchange. Signal → entry → stop/TP placed as Bitunix TP/SL orders → price moves
→ TP/SL fire → reconcile closes the position with the exchange's PnL; plus faults over the wire (429, 502, a timeout
after the exchange executed, a lost answer, a worker killed between submit and record): no duplicate orders, never
a position without a stop after reconcile."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiSecrets, TelegramUser
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from trading.executors.live import LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import (
    BITUNIX_KEY,
    BITUNIX_SECRET,
    SYMBOL,
    bitunix_fake_server,
    bitunix_user_create,
    make_live_position,
)

pytestmark = pytest.mark.django_db

KEY, SECRET = BITUNIX_KEY, BITUNIX_SECRET


@pytest.fixture
def server(settings):
    with bitunix_fake_server(settings) as fake:
        yield fake


@pytest.fixture
def user(server):
    return bitunix_user_create()


def executor(user) -> LiveExecutor:
    return LiveExecutor(user=user, sleep=lambda _seconds: None, fill_poll_attempts=2)


def entries_on_exchange(server):
    return [o.result for o in server.account.orders.values() if o.result.client_order_id.endswith("Lentry")]


def open_stops(server):
    return [
        o.result for o in server.account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"
    ]


def test_signal_to_take_profits_over_http(server, user):
    position = executor(user).open_position(position=make_live_position(user, exchange="bitunix"))
    assert (
        position.status == Position.Status.OPEN
        and position.entry_price == Decimal("100")
        and position.quantity == Decimal("1.5")
    )
    assert [(s.trigger_price, s.quantity, s.side) for s in open_stops(server)] == [
        (Decimal("98"), Decimal("1.5"), "sell")
    ]
    assert [o.state for o in position.orders.filter(leg__in=["sl", "tp1", "tp2"]).order_by("pk")] == [
        Order.State.OPEN
    ] * 3
    assert len(server.requests_to("/tpsl/place_order")) == 3 and len(server.requests_to("/trade/place_order")) == 1

    server.account.set_price(SYMBOL, "102")  # TP1 fires on the exchange
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert (
        position.status == Position.Status.OPEN and position.tp1_done and position.remaining_quantity == Decimal("0.75")
    )

    server.account.set_price(SYMBOL, "104")  # TP2 fires; the exchange drops the stop of the flat position
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.TP2
    exchange_realised = server.account.positions[SYMBOL].realised_pnl
    assert position.realised_pnl == exchange_realised == Decimal("4.5")
    assert not [o for o in server.account.orders.values() if o.result.status == "open"]


def test_stop_fill_over_http_closes_at_a_loss(server, user):
    position = executor(user).open_position(position=make_live_position(user, exchange="bitunix"))
    server.account.set_price(SYMBOL, "98")
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == server.account.positions[SYMBOL].realised_pnl == Decimal("-3")


@pytest.mark.parametrize("faults", [("http_429",), ("http_502", "http_429"), ("timeout",), ("lost_response",)])
def test_entry_faults_over_http_never_duplicate(server, user, faults):
    server.inject("/trade/place_order", *faults)
    position = executor(user).open_position(position=make_live_position(user, exchange="bitunix"))
    assert position.status == Position.Status.OPEN
    assert len(entries_on_exchange(server)) == 1 and server.account.positions[SYMBOL].quantity == Decimal("1.5")
    assert len(open_stops(server)) == 1


@pytest.mark.parametrize("fault", ["lost_response", "timeout"])
def test_stop_sent_but_answer_lost_is_found_not_doubled(server, user, fault):
    server.inject("/tpsl/place_order", fault)
    position = executor(user).open_position(position=make_live_position(user, exchange="bitunix"))
    assert len(open_stops(server)) == 1
    stop = position.orders.get(leg=Order.Leg.STOP_LOSS)
    assert stop.state == Order.State.OPEN and stop.exchange_order_id == open_stops(server)[0].exchange_order_id


def test_worker_killed_after_stop_submit_then_reconcile(server, user, monkeypatch):
    from trading.executors import live as live_module

    real_sync = live_module.order_sync_from_result

    def kill_on_stop(*, order, result):
        if order.leg == Order.Leg.STOP_LOSS:
            raise SystemExit("worker killed")
        return real_sync(order=order, result=result)

    position = make_live_position(user, exchange="bitunix")
    monkeypatch.setattr(live_module, "order_sync_from_result", kill_on_stop)
    with pytest.raises(SystemExit):
        executor(user).open_position(position=position)
    monkeypatch.setattr(live_module, "order_sync_from_result", real_sync)
    report = reconcile_user(user=user, executor=executor(user))
    assert len(open_stops(server)) == 1 and not report.errors
    assert position.orders.get(leg=Order.Leg.STOP_LOSS).state == Order.State.OPEN


def test_wrong_keys_disable_auto_trading_and_tell_the_user(server, monkeypatch):
    sent = []
    monkeypatch.setattr("trading.executors.live.publish", lambda event, **payload: sent.append((event, payload)))
    user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(user=user, exchange="bitunix", secrets=ApiSecrets(api_key=KEY, secret="not-the-secret"))
    position = executor(user).open_position(position=make_live_position(user, exchange="bitunix"))
    assert position.status == Position.Status.FAILED and not entries_on_exchange(server)
    refreshed = TelegramUser.objects.get(pk=user.pk)
    # in plain words: what happened and what to do, never the exchange's raw answer
    assert not refreshed.auto_trading_enabled and refreshed.auto_trading_paused_reason == "Bitunix refused your API key"
    [(_, notice)] = [(e, p) for e, p in sent if e == "user.notify"]
    assert "Make a new key with read and trade rights" in notice["text"] and "not-the-secret" not in notice["text"]


def test_closed_by_hand_on_bitunix_is_booked_from_its_trades(server, user):
    from exchanges.base import OrderRequest

    position = executor(user).open_position(position=make_live_position(user, exchange="bitunix"))
    server.account.set_price(SYMBOL, "101")
    server.account._create(
        OrderRequest(
            symbol=SYMBOL,
            side="sell",
            type="market",
            quantity=Decimal("1.5"),
            client_order_id="byhand1",
            reduce_only=True,
        )
    )
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.EXCHANGE
    assert position.realised_pnl == Decimal("1.5") == server.account.positions[SYMBOL].realised_pnl
    assert server.account.balance == Decimal("10000") + position.net_pnl  # the exchange's fees booked too
    assert not open_stops(server)
