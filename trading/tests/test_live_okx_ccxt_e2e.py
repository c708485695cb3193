"""End to end through the REAL ccxt OKX class: LiveExecutor → CcxtExchangeClient → ccxt.async_support.okx (request
building, signing, parsing, error mapping) → its ``fetch`` hook answered by ``OkxFetchFake`` (checks the signature,
OKX-shaped JSON, contracts of 0.01 BTC). Signal → entry → conditional stop/TP algo orders with our client ids → price
moves → algo fires → reconcile books the fill of the order it placed → PnL matches; plus faults raised the way
ccxt's transport raises them (timeout, 429, 5xx, a lost answer) and a worker killed between submit and record."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiSecrets, TelegramUser
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from testsupport.exchanges.okx_fake import OkxFetchFake
from trading.executors.live import LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import SYMBOL, ccxt_fake_install, make_live_position

pytestmark = pytest.mark.django_db

KEY, SECRET, PASSPHRASE = "okx-key-1a2b3c4d5e6f", "okx-secret-6f5e4d3c2b1a", "okx-pass-99"


@pytest.fixture
def okx(settings, monkeypatch):
    fake = OkxFetchFake(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
    fake.account.set_price(SYMBOL, "100")
    return ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)


@pytest.fixture
def user(okx):
    user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(
        user=user, exchange="okx", secrets=ApiSecrets(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
    )
    return user


def executor(user) -> LiveExecutor:
    return LiveExecutor(user=user, sleep=lambda _seconds: None, fill_poll_attempts=2)


def entries(okx):
    return [o.result for o in okx.account.orders.values() if o.result.client_order_id.endswith("Lentry")]


def live_stops(okx):
    return [
        o.result for o in okx.account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"
    ]


def test_entry_stop_and_take_profits_through_ccxt_okx(okx, user):
    position = executor(user).open_position(position=make_live_position(user))
    assert (
        position.status == Position.Status.OPEN
        and position.quantity == Decimal("1.5")
        and position.entry_price == Decimal("100")
    )
    (entry_body,) = okx.requests_to("/trade/batch-orders")[0]
    assert (
        entry_body["sz"] == "150" and entry_body["clOrdId"] == position.orders.get(leg="entry").client_order_id
    )  # 1.5 BTC = 150 × 0.01
    algo_bodies = okx.requests_to("/trade/order-algo")
    stop_body = next(b for b in algo_bodies if b.get("slTriggerPx"))
    assert stop_body["ordType"] == "conditional" and stop_body["slTriggerPx"] == "98" and stop_body["slOrdPx"] == "-1"
    assert stop_body["reduceOnly"] is True and stop_body["algoClOrdId"].endswith("Lsl") and stop_body["sz"] == "150"
    assert {b["algoClOrdId"][-3:] for b in algo_bodies} == {"Lsl", "tp1", "tp2"}
    assert str(okx.requests_to("/account/set-leverage")[0]["lever"]) == "5"

    okx.account.set_price(SYMBOL, "102")  # TP1 algo fires
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.tp1_done and position.remaining_quantity == Decimal("0.75")

    okx.account.set_price(SYMBOL, "104")  # TP2 algo fires; OKX drops the flat position's stop
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.TP2
    assert position.realised_pnl == okx.account.positions[SYMBOL].realised_pnl == Decimal("4.5")
    assert position.fees == Decimal("0.0005") * (
        Decimal("150") + Decimal("76.5") + Decimal("78")
    )  # fees of the triggered orders
    assert okx.account.balance == Decimal("10000") + position.net_pnl


def test_stop_fires_and_the_loss_is_booked_from_the_order_it_placed(okx, user):
    position = executor(user).open_position(position=make_live_position(user))
    okx.account.set_price(SYMBOL, "97.5")
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == Decimal("-3.75") and okx.account.balance == Decimal("10000") + position.net_pnl


@pytest.mark.parametrize(
    "faults", [("timeout",), ("rate_limit", "server_error"), ("lost_response",), ("lost_response", "timeout")]
)
def test_entry_faults_through_ccxt_never_duplicate(okx, user, faults):
    okx.inject("/trade/batch-orders", *faults)
    position = executor(user).open_position(position=make_live_position(user))
    assert position.status == Position.Status.OPEN
    assert len(entries(okx)) == 1 and okx.account.positions[SYMBOL].quantity == Decimal("1.5")
    assert len(live_stops(okx)) == 1
    assert okx.requests_to("/trade/order")  # looked up by clOrdId before any resend


def test_stop_answer_lost_is_found_by_algo_client_id(okx, user):
    okx.inject("/trade/order-algo", "lost_response")
    position = executor(user).open_position(position=make_live_position(user))
    assert len(live_stops(okx)) == 1
    stop = position.orders.get(leg=Order.Leg.STOP_LOSS)
    assert stop.state == Order.State.OPEN and stop.exchange_order_id == live_stops(okx)[0].exchange_order_id


def test_worker_killed_after_entry_submit_reconcile_protects_once(okx, user, monkeypatch):
    from trading.executors import live as live_module

    real_sync = live_module.order_sync_from_result
    monkeypatch.setattr(
        live_module, "order_sync_from_result", lambda **kwargs: (_ for _ in ()).throw(SystemExit("killed"))
    )
    position = make_live_position(user)
    with pytest.raises(SystemExit):
        executor(user).open_position(position=position)
    monkeypatch.setattr(live_module, "order_sync_from_result", real_sync)
    report = reconcile_user(user=user, executor=executor(user))
    executor(user).open_position(position=position)  # the redelivered task adds nothing
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("1.5") and not report.errors
    assert len(entries(okx)) == 1 and len(live_stops(okx)) == 1


def test_insufficient_margin_from_okx_disables_auto_trading(okx, user, monkeypatch):
    sent = []
    monkeypatch.setattr("trading.executors.live.publish", lambda event, **payload: sent.append((event, payload)))
    okx.account.balance = Decimal("1")
    position = executor(user).open_position(position=make_live_position(user))
    assert position.status == Position.Status.FAILED and not entries(okx)
    assert not TelegramUser.objects.get(pk=user.pk).auto_trading_enabled
    assert [e for e, _ in sent].count("user.notify") == 1


def test_closed_by_hand_on_okx_after_tp1_is_booked_from_okx_fills(okx, user):
    from exchanges.base import OrderRequest

    position = executor(user).open_position(position=make_live_position(user))
    okx.account.set_price(SYMBOL, "102")  # TP1 algo fires (its fill carries the id of the order it placed)
    reconcile_user(user=user, executor=executor(user))
    okx.account.set_price(SYMBOL, "101")
    okx.account._create(
        OrderRequest(
            symbol=SYMBOL,
            side="sell",
            type="market",
            quantity=Decimal("0.75"),
            client_order_id="byhand1",
            reduce_only=True,
        )
    )
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.EXCHANGE
    assert position.realised_pnl == Decimal("2.25") == okx.account.positions[SYMBOL].realised_pnl  # 0.75 × 2 + 0.75 × 1
    assert okx.account.balance == Decimal("10000") + position.net_pnl
    assert okx.requests_to("/trade/fills-history")


def test_lookup_that_misses_then_duplicated_clordid_adopts_the_order(okx, user):
    # the entry arrives but its answer is lost; the look-up does not see it yet; the resend gets OKX 51016
    okx.inject("/trade/batch-orders", "lost_response")
    okx.inject("/trade/order", "stale_read")
    position = executor(user).open_position(position=make_live_position(user))
    assert position.status == Position.Status.OPEN and len(entries(okx)) == 1
    assert len(okx.requests_to("/trade/batch-orders")) == 2  # sent twice, placed once
    assert TelegramUser.objects.get(pk=user.pk).auto_trading_enabled  # a duplicate is not a user-facing failure


def test_trailing_stop_update_places_the_new_algo_before_cancelling_the_old(okx, user):
    position = executor(user).open_position(position=make_live_position(user))
    old_stop = position.orders.get(leg=Order.Leg.STOP_LOSS)
    position = executor(user).update_stop(position=position, stop_price=Decimal("100.04"))
    (stop,) = live_stops(okx)
    assert stop.trigger_price == Decimal("100") and stop.client_order_id.endswith("Lsl2")  # rounded to the 0.1 tick
    sent = [
        (m, p.rsplit("/", 1)[-1])
        for m, p, _ in okx.requests
        if p.endswith(("order-algo", "cancel-algos")) and m == "POST"
    ]
    assert sent[-2:] == [("POST", "order-algo"), ("POST", "cancel-algos")]
    assert okx.requests_to("/trade/cancel-algos")[-1] == [
        {"algoId": old_stop.exchange_order_id, "instId": "BTC-USDT-SWAP"}
    ]
    old_stop.refresh_from_db()
    assert old_stop.state == Order.State.CANCELLED


def test_manual_close_cancels_algos_and_closes_reduce_only_at_market(okx, user):
    position = executor(user).open_position(position=make_live_position(user))
    okx.account.set_price(SYMBOL, "101")
    position = executor(user).close_position(position=position, reason=Position.CloseReason.MANUAL)
    assert position.status == Position.Status.CLOSED and position.realised_pnl == Decimal("1.5")
    close_body = okx.requests_to("/trade/batch-orders")[-1][0]
    assert close_body["side"] == "sell" and close_body["reduceOnly"] is True and close_body["sz"] == "150"
    assert not [o for o in okx.account.orders.values() if o.result.status == "open"]
    assert okx.account.balance == Decimal("10000") + position.net_pnl
