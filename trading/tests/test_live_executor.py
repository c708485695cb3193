# ruff: noqa: F811  (pytest fixtures imported from trading.tests.live_fixtures are re-bound as test arguments)
"""End-to-end live trading on the in-process fake exchange: signal → order → stop placed → price moves → stop/TP
fills → position closed → PnL matches; plus fault injection (timeouts, 429, 5xx, partial fills, a worker killed
between submit and record): no duplicate orders, no position without a stop after reconcile, nothing lost."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import TelegramUser
from trading.executors.factory import executor_for
from trading.executors.live import LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import SYMBOL, account, fake_exchange, live_user, make_live_position  # noqa: F401

pytestmark = pytest.mark.django_db


def executor(user, **kwargs) -> LiveExecutor:
    kwargs.setdefault("sleep", lambda _seconds: None)
    kwargs.setdefault("fill_poll_attempts", 2)
    return LiveExecutor(user=user, **kwargs)


def exchange_orders(account, leg_suffix: str):
    return [o.result for o in account.orders.values() if o.result.client_order_id.endswith(leg_suffix)]


def open_exchange_stops(account):
    return [o.result for o in account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"]


def test_executor_for_live_returns_the_live_executor(live_user):
    assert isinstance(executor_for(user=live_user, mode="live"), LiveExecutor)


def test_signal_to_take_profits_closes_the_position_with_matching_pnl(live_user, account):
    position = make_live_position(live_user)
    position = executor(live_user).open_position(position=position)

    assert position.status == Position.Status.OPEN
    assert position.entry_price == Decimal("100") and position.quantity == Decimal("1.5")
    stop = position.orders.get(leg=Order.Leg.STOP_LOSS)
    assert stop.state == Order.State.OPEN and stop.exchange_order_id and stop.reduce_only
    assert [(o.trigger_price, o.quantity, o.side) for o in open_exchange_stops(account)] == [
        (Decimal("98"), Decimal("1.5"), "sell")
    ]
    tps = {o.leg: o for o in position.orders.filter(leg__in=["tp1", "tp2"])}
    assert (tps["tp1"].quantity, tps["tp2"].quantity) == (Decimal("0.75"), Decimal("0.75"))
    assert all(o.state == Order.State.OPEN for o in tps.values())

    account.set_price(SYMBOL, "102")  # TP1 fires on the exchange
    reconcile_user(user=live_user, executor=executor(live_user))
    position.refresh_from_db()
    assert (
        position.status == Position.Status.OPEN and position.tp1_done and position.remaining_quantity == Decimal("0.75")
    )

    account.set_price(SYMBOL, "104")  # TP2 fires; the exchange drops the stop of the now flat position
    report = reconcile_user(user=live_user, executor=executor(live_user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.TP2
    assert position.remaining_quantity == 0
    assert position.realised_pnl == Decimal("4.5")  # 0.75 × 2 + 0.75 × 4
    fees = Decimal("0.0005") * (Decimal("150") + Decimal("76.5") + Decimal("78"))
    assert position.fees == fees
    assert account.balance == Decimal("10000") + position.net_pnl  # our books equal the exchange's
    assert any("closed" in r for r in report.repairs)
    assert not [o for o in account.orders.values() if o.result.status == "open"]


def test_stop_fill_closes_the_position_at_a_loss(live_user, account):
    position = executor(live_user).open_position(position=make_live_position(live_user))
    account.set_price(SYMBOL, "97.5")
    reconcile_user(user=live_user, executor=executor(live_user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == Decimal("-3.75")  # (97.5 − 100) × 1.5
    assert account.balance == Decimal("10000") + position.net_pnl


def test_short_position_gets_a_buy_stop_above_entry(live_user, account):
    position = executor(live_user).open_position(
        position=make_live_position(live_user, side="short", stop="102", tp1="98", tp2="96")
    )
    assert [(o.side, o.trigger_price) for o in open_exchange_stops(account)] == [("buy", Decimal("102"))]
    account.set_price(SYMBOL, "102")
    reconcile_user(user=live_user, executor=executor(live_user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.realised_pnl == Decimal("-3.0")


def test_open_position_is_idempotent(live_user, account):
    position = make_live_position(live_user)
    live = executor(live_user)
    live.open_position(position=position)
    live.open_position(position=position)
    assert len(exchange_orders(account, "Lentry")) == 1
    assert len(open_exchange_stops(account)) == 1


@pytest.mark.parametrize(
    "faults", [("timeout",), ("rate_limit", "server_error"), ("lost_response",), ("lost_response", "timeout")]
)
def test_transient_faults_on_entry_never_duplicate_the_order(live_user, account, faults):
    account.inject("create_order", *faults)
    position = executor(live_user).open_position(position=make_live_position(live_user))
    assert position.status == Position.Status.OPEN
    assert len(exchange_orders(account, "Lentry")) == 1
    assert len(open_exchange_stops(account)) == 1
    assert account.positions[SYMBOL].quantity == Decimal("1.5")


def test_stop_that_cannot_be_placed_now_is_placed_by_reconcile(live_user, account):
    position = make_live_position(live_user)
    entry_id = position.orders.get(leg="entry").client_order_id
    # the entry goes through; then the exchange answers 5xx to everything for a while (4 attempts of the stop)
    real_create = account._create
    calls = {"n": 0}

    def flaky_create(request):
        if request.client_order_id != entry_id:
            calls["n"] += 1
            if calls["n"] <= 4:
                from exchanges.errors import RetryableExchangeError

                raise RetryableExchangeError("ExchangeNotAvailable: 503")
        return real_create(request)

    account._create = flaky_create
    with pytest.raises(Exception, match="503"):
        executor(live_user).open_position(position=position)
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and not open_exchange_stops(account)

    report = reconcile_user(user=live_user, executor=executor(live_user))
    assert [(o.trigger_price, o.quantity) for o in open_exchange_stops(account)] == [(Decimal("98"), Decimal("1.5"))]
    assert any("no live stop" in r for r in report.repairs)
    assert len(exchange_orders(account, "Lentry")) == 1


def test_partial_fill_protects_what_filled(live_user, account):
    account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user).open_position(position=make_live_position(live_user))
    entry = position.orders.get(leg="entry")
    assert entry.state == Order.State.CANCELLED and entry.filled_quantity == Decimal("0.6")
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("0.6")
    assert [o.quantity for o in open_exchange_stops(account)] == [Decimal("0.6")]
    assert account.positions[SYMBOL].quantity == Decimal("0.6")


def test_worker_killed_between_submit_and_record_then_rerun(live_user, account, monkeypatch):
    from trading.executors import live as live_module

    position = make_live_position(live_user)
    real_sync = live_module.order_sync_from_result

    def killed(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(live_module, "order_sync_from_result", killed)
    with pytest.raises(SystemExit):
        executor(live_user).open_position(position=position)
    entry = position.orders.get(leg="entry")
    assert entry.state == Order.State.SUBMITTED and not entry.exchange_order_id  # accepted, never recorded
    assert len(exchange_orders(account, "Lentry")) == 1

    monkeypatch.setattr(live_module, "order_sync_from_result", real_sync)
    # the restarted worker's reconcile records the fill and places the stop; a re-run of the task adds nothing
    reconcile_user(user=live_user, executor=executor(live_user))
    executor(live_user).open_position(position=position)
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("1.5")
    assert len(exchange_orders(account, "Lentry")) == 1
    assert len(open_exchange_stops(account)) == 1
    assert position.fills.count() == 1


def test_stop_killed_between_submit_and_record_is_not_doubled(live_user, account, monkeypatch):
    from trading.executors import live as live_module

    position = make_live_position(live_user)
    real_sync = live_module.order_sync_from_result

    def kill_on_stop(*, order, result):
        if order.leg == Order.Leg.STOP_LOSS:
            raise SystemExit("worker killed")
        return real_sync(order=order, result=result)

    monkeypatch.setattr(live_module, "order_sync_from_result", kill_on_stop)
    with pytest.raises(SystemExit):
        executor(live_user).open_position(position=position)
    monkeypatch.setattr(live_module, "order_sync_from_result", real_sync)
    reconcile_user(user=live_user, executor=executor(live_user))
    assert len(open_exchange_stops(account)) == 1
    assert position.orders.get(leg=Order.Leg.STOP_LOSS).state == Order.State.OPEN


def test_insufficient_balance_disables_auto_trading_and_tells_the_user(live_user, account, monkeypatch):
    sent = []
    monkeypatch.setattr("trading.executors.live.publish", lambda event, **payload: sent.append((event, payload)))
    account.balance = Decimal("1")
    position = executor(live_user).open_position(position=make_live_position(live_user))
    assert position.status == Position.Status.FAILED
    entry = position.orders.get(leg="entry")
    assert entry.state == Order.State.REJECTED and "insufficient" in entry.error.lower()
    user = TelegramUser.objects.get(pk=live_user.pk)
    assert not user.auto_trading_enabled and user.auto_trading_paused_reason == "OKX: not enough margin for the order"
    notify = [p for e, p in sent if e == "user.notify"]
    assert (
        len(notify) == 1
        and notify[0]["user_id"] == live_user.pk
        and "Auto-trading switched off" in notify[0]["text"]
        and "/autotrade on" in notify[0]["text"]
    )


def test_stop_cancelled_on_the_exchange_is_replaced_by_reconcile(live_user, account):
    position = executor(live_user).open_position(position=make_live_position(live_user))
    stop = position.orders.get(leg=Order.Leg.STOP_LOSS)
    from dataclasses import replace

    account.orders[stop.exchange_order_id].result = replace(
        account.orders[stop.exchange_order_id].result, status="canceled"
    )
    report = reconcile_user(user=live_user, executor=executor(live_user))
    stops = open_exchange_stops(account)
    assert len(stops) == 1 and stops[0].client_order_id.endswith("Lsl2")
    assert any("no live stop" in r for r in report.repairs)


def test_position_closed_on_the_exchange_is_closed_here(live_user, account):
    position = executor(live_user).open_position(position=make_live_position(live_user))
    from exchanges.base import OrderRequest

    account.set_price(SYMBOL, "101")
    # the user closes it by hand on the exchange, in two clicks
    account._create(
        OrderRequest(
            symbol=SYMBOL,
            side="sell",
            type="market",
            quantity=Decimal("1.0"),
            client_order_id="manual1",
            reduce_only=True,
        )
    )
    account.set_price(SYMBOL, "101.5")
    account._create(
        OrderRequest(
            symbol=SYMBOL,
            side="sell",
            type="market",
            quantity=Decimal("0.5"),
            client_order_id="manual2",
            reduce_only=True,
        )
    )
    report = reconcile_user(user=live_user, executor=executor(live_user))
    reconcile_user(user=live_user, executor=executor(live_user))  # a second pass books nothing more
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.EXCHANGE
    assert not open_exchange_stops(account)
    # booked from the exchange's own trades: its prices and fees, so our PnL is the exchange's
    assert position.realised_pnl == Decimal("1.0") + Decimal("0.75") == account.positions[SYMBOL].realised_pnl
    assert account.balance == Decimal("10000") + position.net_pnl
    assert position.fills.filter(order__leg=Order.Leg.CLOSE).count() == 2
    assert any("booked from the exchange" in r for r in report.repairs)


def test_unknown_order_with_our_client_id_is_adopted(live_user, account):
    position = executor(live_user).open_position(position=make_live_position(live_user))
    tp2 = position.orders.get(leg=Order.Leg.TP2)
    cid, exchange_id = tp2.client_order_id, tp2.exchange_order_id
    tp2.delete()  # as if its row had been lost
    report = reconcile_user(user=live_user, executor=executor(live_user))
    adopted = Order.objects.get(client_order_id=cid)
    assert (
        adopted.position_id == position.pk and adopted.exchange_order_id == exchange_id and adopted.leg == Order.Leg.TP2
    )
    assert any("adopted" in r for r in report.repairs)


def test_update_stop_places_the_new_stop_before_cancelling_the_old(live_user, account):
    position = executor(live_user).open_position(position=make_live_position(live_user))
    position = executor(live_user).update_stop(position=position, stop_price=Decimal("100"))
    stops = open_exchange_stops(account)
    assert [(s.trigger_price, s.client_order_id[-3:]) for s in stops] == [(Decimal("100"), "sl2")]
    creates = [key for method, key in account.calls if method in ("create_order", "cancel_order")]
    assert creates.index(stops[0].client_order_id) < len(creates) - 1  # new stop created, then the old one cancelled
    account.set_price(SYMBOL, "100")
    reconcile_user(user=live_user, executor=executor(live_user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.BREAKEVEN


def test_manual_close_cancels_protective_orders_and_books_pnl(live_user, account):
    position = executor(live_user).open_position(position=make_live_position(live_user))
    account.set_price(SYMBOL, "101")
    position = executor(live_user).close_position(position=position, reason=Position.CloseReason.MANUAL)
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.MANUAL
    assert position.realised_pnl == Decimal("1.5")
    assert not [o for o in account.orders.values() if o.result.status == "open"]
    assert account.balance == Decimal("10000") + position.net_pnl


def test_reconcile_task_runs_for_every_user_with_live_positions(live_user, account):
    from trading.tasks_live import reconcile_exchange_positions

    position = make_live_position(live_user)
    entry = position.orders.get(leg="entry")
    from exchanges.base import OrderRequest

    # the entry reached the exchange but the worker died before recording anything
    account._create(
        OrderRequest(
            symbol=SYMBOL, side="buy", type="market", quantity=Decimal("1.5"), client_order_id=entry.client_order_id
        )
    )
    Order.objects.filter(pk=entry.pk).update(state=Order.State.SUBMITTED)
    repairs = reconcile_exchange_positions.run()
    position.refresh_from_db()
    assert repairs >= 2 and position.status == Position.Status.OPEN
    assert len(open_exchange_stops(account)) == 1


def test_reconcile_skips_a_position_an_order_task_is_working_on(live_user, account):
    from trading.executors.live import position_lock

    position = make_live_position(live_user)
    entry = position.orders.get(leg="entry")
    from exchanges.base import OrderRequest

    account._create(
        OrderRequest(
            symbol=SYMBOL, side="buy", type="market", quantity=Decimal("1.5"), client_order_id=entry.client_order_id
        )
    )
    Order.objects.filter(pk=entry.pk).update(state=Order.State.SUBMITTED)
    with position_lock(position_id=position.pk) as held:
        assert held
        report = reconcile_user(user=live_user, executor=executor(live_user))
        assert report.skipped == [position.pk] and not open_exchange_stops(account)  # the task in flight protects it
    report = reconcile_user(user=live_user, executor=executor(live_user))
    assert not report.skipped and len(open_exchange_stops(account)) == 1
