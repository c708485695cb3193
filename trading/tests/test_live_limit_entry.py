# ruff: noqa: F811  (pytest fixtures imported from trading.tests.live_fixtures are re-bound as test arguments)
"""Live limit entries (``LIVE_ENTRY_ORDER_TYPE=limit``) on the in-process fake exchange, with a controllable clock:
the limit rests at the signal's entry price on the market's tick; what fills gets its reduce-only stop and
take-profits (re-sized, new stop first, as more fills); at the deadline the unfilled remainder is cancelled (the
``settle_limit_entry`` task, and reconcile after a restart); a limit that never filled fails the position and the
user is told once; a limit whose window passed before it was sent is not sent. Market entries stay the default."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiSecrets, UserPreferences
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges.base import OrderRequest
from signals.tests.factories import SignalFactory, SymbolFactory
from testsupport.exchanges.fake import fake_account, fake_account_name
from trading import tasks
from trading.executors.live import LIMIT_ENTRY_CHECK_SECONDS, LIMIT_ENTRY_UNSENT, LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tasks_live import reconcile_exchange_positions, settle_limit_entry
from trading.tests.live_fixtures import (  # noqa: F401
    API_KEY,
    API_SECRET,
    PASSPHRASE,
    SYMBOL,
    account,
    fake_exchange,
    live_user,
    make_live_position,
)

pytestmark = pytest.mark.django_db

TIMEOUT = 300
LIMIT = Decimal("99.5")  # the signal's entry 99.49996 on the fake market's 0.0001 tick


class Clock:
    """``django.utils.timezone.now`` under the test's control (the deadline is measured against it)."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    controlled = Clock(timezone.now())
    monkeypatch.setattr(timezone, "now", controlled)
    return controlled


@pytest.fixture
def limit_entries(settings):
    settings.LIVE_ENTRY_ORDER_TYPE = "limit"
    settings.LIVE_LIMIT_ENTRY_TIMEOUT_SECONDS = TIMEOUT
    return settings


@pytest.fixture
def notices(monkeypatch) -> list[dict]:
    """The ``user.notify`` events the live executor publishes (other events are dropped)."""
    sent: list[dict] = []
    monkeypatch.setattr(
        "trading.executors.live.publish",
        lambda event, **payload: sent.append(payload) if event == "user.notify" else None,
    )
    return sent


@pytest.fixture
def scheduled() -> list[tuple[int, float]]:
    """The (position id, countdown) of every ``settle_limit_entry`` check the executor schedules."""
    return []


def executor(user, scheduled: list | None = None) -> LiveExecutor:
    later = (
        (lambda position_id, countdown: scheduled.append((position_id, countdown)))
        if scheduled is not None
        else (lambda *_: None)
    )
    return LiveExecutor(user=user, sleep=lambda _seconds: None, fill_poll_attempts=2, settle_later=later)


def limit_position(user, clock: Clock, *, side: str = "long", **kwargs) -> Position:
    """A pending live position stored now (by the clock), its signal's entry off the tick."""
    defaults = {"entry": "99.49996", "stop": "98", "tp1": "102", "tp2": "104"}
    if side == "short":
        defaults = {"entry": "100.50004", "stop": "102", "tp1": "98", "tp2": "96"}
    position = make_live_position(user, side=side, **{**defaults, **kwargs})
    Position.objects.filter(pk=position.pk).update(created_at=clock.now)
    position.refresh_from_db()
    return position


def open_stops(account) -> list[tuple[Decimal, Decimal]]:
    return [
        (o.result.trigger_price, o.result.quantity)
        for o in account.orders.values()
        if o.result.type == "stop_market" and o.result.status == "open"
    ]


def open_take_profits(account) -> list[tuple[Decimal, Decimal]]:
    return sorted(
        (o.result.trigger_price, o.result.quantity)
        for o in account.orders.values()
        if o.result.type == "take_profit" and o.result.status == "open"
    )


def exchange_state(account) -> list[tuple]:
    return sorted(
        (o.result.client_order_id, o.result.type, o.result.status, o.result.quantity, o.result.filled_quantity)
        for o in account.orders.values()
    )


def orders_state(position: Position) -> list[tuple]:
    return list(
        position.orders.order_by("pk").values_list(
            "client_order_id", "state", "quantity", "filled_quantity", "exchange_order_id"
        )
    )


def calls_since(account, start: int, *methods: str) -> list[tuple[str, str]]:
    return [(method, key) for method, key in account.calls[start:] if method in methods]


@pytest.mark.parametrize(
    ("side", "price", "exchange_side"), [("long", LIMIT, "buy"), ("short", Decimal("100.5"), "sell")]
)
def test_limit_entry_rests_at_the_signal_price_rounded_to_the_tick(
    live_user, account, limit_entries, clock, scheduled, side, price, exchange_side
):
    position = limit_position(live_user, clock, side=side)
    position = executor(live_user, scheduled).open_position(position=position)

    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert entry.client_order_id == f"P{position.signal_id}U{live_user.pk}Lentry"
    assert (entry.type, entry.price, entry.state) == (Order.Type.LIMIT, price, Order.State.OPEN)
    [sent] = account.orders_with_client_id(entry.client_order_id)
    assert (sent.type, sent.price, sent.side, sent.quantity, sent.status) == (
        "limit",
        price,
        exchange_side,
        Decimal("1.5"),
        "open",
    )
    assert sent.exchange_order_id == entry.exchange_order_id
    assert position.status == Position.Status.PENDING and not open_stops(account)
    assert scheduled == [(position.pk, LIMIT_ENTRY_CHECK_SECONDS)]  # checked again soon, at the latest at the deadline

    executor(live_user, scheduled).open_position(position=position)  # the task delivered twice: nothing more sent
    assert len(account.orders_with_client_id(entry.client_order_id)) == 1


def test_full_fill_gets_the_stop_and_take_profits(live_user, account, limit_entries, clock, scheduled):
    position = executor(live_user, scheduled).open_position(position=limit_position(live_user, clock))
    account.set_price(SYMBOL, "99.5")  # the limit fills on the exchange
    clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
    position = executor(live_user, scheduled).limit_entry_settle(position=position)  # the scheduled check

    assert position.status == Position.Status.OPEN
    assert (position.quantity, position.remaining_quantity, position.entry_price) == (
        Decimal("1.5"),
        Decimal("1.5"),
        LIMIT,
    )
    assert position.orders.get(leg=Order.Leg.ENTRY).state == Order.State.FILLED
    assert open_stops(account) == [(Decimal("98"), Decimal("1.5"))]
    assert open_take_profits(account) == [(Decimal("102"), Decimal("0.75")), (Decimal("104"), Decimal("0.75"))]
    assert len(scheduled) == 1  # nothing left on the book: no further check


def test_limit_already_reached_when_sent_fills_and_is_protected_at_once(
    live_user, account, limit_entries, clock, scheduled
):
    account.set_price(SYMBOL, "99.4")
    position = executor(live_user, scheduled).open_position(position=limit_position(live_user, clock))
    assert position.status == Position.Status.OPEN and position.entry_price == LIMIT  # a limit never pays worse
    assert open_stops(account) == [(Decimal("98"), Decimal("1.5"))]
    assert scheduled == []


def test_partial_fills_resize_the_stop_new_one_first_and_the_take_profits(
    live_user, account, limit_entries, clock, scheduled
):
    account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user, scheduled).open_position(position=limit_position(live_user, clock))
    account.set_price(SYMBOL, "99.5")  # 0.6 of 1.5 fills
    clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
    position = executor(live_user, scheduled).limit_entry_settle(position=position)
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("0.6")
    assert open_stops(account) == [(Decimal("98"), Decimal("0.6"))]
    assert open_take_profits(account) == [(Decimal("102"), Decimal("0.3")), (Decimal("104"), Decimal("0.3"))]
    assert scheduled[-1] == (position.pk, LIMIT_ENTRY_CHECK_SECONDS)  # still resting: checked again

    account.partial_fill_ratio = Decimal("0.4")
    account.set_price(SYMBOL, "99.5")  # 0.6 more: 1.2 held, the stop covers 0.6
    assert account.positions[SYMBOL].quantity == Decimal("1.2")
    start = len(account.calls)
    clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
    position = executor(live_user, scheduled).limit_entry_settle(position=position)
    stops = position.orders.filter(leg=Order.Leg.STOP_LOSS).order_by("pk")
    old, new = stops[0], stops[1]
    assert new.client_order_id.endswith("Lsl2") and new.quantity == Decimal("1.2") and new.state == Order.State.OPEN
    assert old.state == Order.State.CANCELLED
    sequence = calls_since(account, start, "create_order", "cancel_order")
    assert sequence.index(("create_order", new.client_order_id)) < sequence.index(("cancel_order", old.client_order_id))
    assert open_stops(account) == [(Decimal("98"), Decimal("1.2"))]
    assert open_take_profits(account) == [(Decimal("102"), Decimal("0.6")), (Decimal("104"), Decimal("0.6"))]
    live_tps = position.orders.filter(leg__in=["tp1", "tp2"], state=Order.State.OPEN)
    assert sorted(o.client_order_id.rsplit("L", 1)[1] for o in live_tps) == ["tp12", "tp22"]  # re-sized revisions

    account.set_price(SYMBOL, "99.5")  # the rest fills; this time a reconcile pass notices first
    report = reconcile_user(user=live_user, executor=executor(live_user, scheduled))
    position.refresh_from_db()
    assert position.quantity == Decimal("1.5") == account.positions[SYMBOL].quantity
    assert open_stops(account) == [(Decimal("98"), Decimal("1.5"))]
    assert open_take_profits(account) == [(Decimal("102"), Decimal("0.75")), (Decimal("104"), Decimal("0.75"))]
    assert position.orders.filter(leg=Order.Leg.STOP_LOSS, state=Order.State.OPEN).count() == 1
    assert any("re-sized" in r for r in report.repairs)

    account.set_price(SYMBOL, "98")  # the one stop closes the whole position
    reconcile_user(user=live_user, executor=executor(live_user, scheduled))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == (Decimal("98") - LIMIT) * Decimal("1.5")
    assert account.positions[SYMBOL].quantity == 0 and account.balance == Decimal("10000") + position.net_pnl


def test_deadline_with_a_partial_fill_cancels_the_remainder_and_protects_the_fill(
    live_user, account, limit_entries, clock, notices
):
    account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user).open_position(position=limit_position(live_user, clock))
    account.set_price(SYMBOL, "99.5")  # 0.6 fills, unnoticed until the deadline
    clock.advance(TIMEOUT + 1)

    assert settle_limit_entry.run(position.pk) == Position.Status.OPEN

    position.refresh_from_db()
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert entry.state == Order.State.CANCELLED and entry.filled_quantity == Decimal("0.6")
    assert account.orders_with_client_id(entry.client_order_id)[0].status == "canceled"
    assert (position.quantity, position.remaining_quantity) == (Decimal("0.6"), Decimal("0.6"))
    assert open_stops(account) == [(Decimal("98"), Decimal("0.6"))]
    assert open_take_profits(account) == [(Decimal("102"), Decimal("0.3")), (Decimal("104"), Decimal("0.3"))]
    account.set_price(SYMBOL, "99.4")
    assert account.positions[SYMBOL].quantity == Decimal("0.6")  # the cancelled remainder fills no more
    assert notices == []


def test_deadline_without_a_fill_fails_the_position_and_tells_the_user_once(
    live_user, account, limit_entries, clock, notices
):
    position = executor(live_user).open_position(position=limit_position(live_user, clock))
    clock.advance(TIMEOUT - 1)
    assert settle_limit_entry.run(position.pk) == Position.Status.PENDING  # not yet: the limit keeps resting
    clock.advance(2)

    assert settle_limit_entry.run(position.pk) == Position.Status.FAILED
    assert settle_limit_entry.run(position.pk) == Position.Status.FAILED  # settled twice (a redelivery)
    reconcile_user(user=live_user, executor=executor(live_user))
    executor(live_user).open_position(position=position)  # the entry task redelivered late

    position.refresh_from_db()
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert (
        position.status == Position.Status.FAILED
        and entry.state == Order.State.CANCELLED
        and entry.filled_quantity == 0
    )
    [sent] = account.orders_with_client_id(entry.client_order_id)
    assert sent.status == "canceled"
    assert not open_stops(account) and not account.position(SYMBOL).quantity
    assert len(notices) == 1
    assert notices[0]["user_id"] == live_user.pk and notices[0]["dedupe_key"] == f"live-limit-unfilled:{position.pk}"
    assert "not filled within 5 min" in notices[0]["text"] and "99.5" in notices[0]["text"]
    account.set_price(SYMBOL, "99")
    assert not account.position(SYMBOL).quantity


def test_window_passed_before_send_sends_nothing(live_user, account, limit_entries, clock, notices, scheduled):
    position = limit_position(live_user, clock)
    clock.advance(TIMEOUT)  # the entry task ran late (a redelivery after a worker died)
    start = len(account.calls)

    position = executor(live_user, scheduled).open_position(position=position)

    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert position.status == Position.Status.FAILED
    assert entry.state == Order.State.CANCELLED and entry.error == LIMIT_ENTRY_UNSENT and not entry.exchange_order_id
    assert calls_since(account, start, "create_order", "set_leverage") == []
    assert not account.orders_with_client_id(entry.client_order_id) and scheduled == []
    assert len(notices) == 1 and "could not be placed within 5 min" in notices[0]["text"]


def test_entry_sent_with_its_answer_lost_is_not_sent_again_after_its_window(
    live_user, account, limit_entries, clock, notices
):
    position = limit_position(live_user, clock)
    Order.objects.filter(position=position, leg=Order.Leg.ENTRY).update(
        type=Order.Type.LIMIT, price=LIMIT, state=Order.State.SUBMITTED
    )
    clock.advance(TIMEOUT + 1)
    start = len(account.calls)

    position = executor(live_user).open_position(position=position)

    assert position.status == Position.Status.FAILED
    assert calls_since(account, start, "create_order") == []  # looked up by client order id, not re-sent
    assert ("fetch_order", position.orders.get(leg=Order.Leg.ENTRY).client_order_id) in account.calls[start:]
    assert len(notices) == 1


def test_entry_that_reached_the_exchange_before_its_window_passed_is_settled_not_resent(
    live_user, account, limit_entries, clock, notices
):
    position = limit_position(live_user, clock)
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    Order.objects.filter(pk=entry.pk).update(type=Order.Type.LIMIT, price=LIMIT, state=Order.State.SUBMITTED)
    account.partial_fill_ratio = Decimal("0.4")
    account._create(
        OrderRequest(
            symbol=SYMBOL,
            side="buy",
            type="limit",
            quantity=Decimal("1.5"),
            price=LIMIT,
            client_order_id=entry.client_order_id,
        )
    )
    account.set_price(SYMBOL, "99.5")  # accepted, 0.6 filled, the worker died before recording anything
    clock.advance(TIMEOUT + 1)

    position = executor(live_user).open_position(position=position)

    entry.refresh_from_db()
    assert len(account.orders_with_client_id(entry.client_order_id)) == 1
    assert entry.state == Order.State.CANCELLED and entry.filled_quantity == Decimal("0.6")
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("0.6")
    assert open_stops(account) == [(Decimal("98"), Decimal("0.6"))]
    assert notices == []


@pytest.mark.parametrize("filled", [True, False])
def test_reconcile_after_a_restart_settles_an_expired_limit_entry(
    live_user, account, limit_entries, clock, notices, scheduled, filled
):
    if filled:
        account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user, scheduled).open_position(position=limit_position(live_user, clock))
    assert scheduled  # the scheduled check is lost with the worker
    if filled:
        account.set_price(SYMBOL, "99.5")  # 0.6 fills while the worker is down
    clock.advance(TIMEOUT + 60)

    repairs = reconcile_exchange_positions.run()  # what a restarted worker runs first
    reconcile_exchange_positions.run()  # and the next pass: nothing more
    assert repairs >= 1

    position.refresh_from_db()
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert entry.state == Order.State.CANCELLED
    assert account.orders_with_client_id(entry.client_order_id)[0].status == "canceled"
    if filled:
        assert position.status == Position.Status.OPEN and position.quantity == Decimal("0.6")
        assert open_stops(account) == [(Decimal("98"), Decimal("0.6"))]
        assert open_take_profits(account) == [(Decimal("102"), Decimal("0.3")), (Decimal("104"), Decimal("0.3"))]
        assert notices == []
    else:
        assert position.status == Position.Status.FAILED and not open_stops(account)
        settle_limit_entry.run(position.pk)  # the lost check delivered after all
        assert len(notices) == 1 and notices[0]["dedupe_key"] == f"live-limit-unfilled:{position.pk}"


def test_settle_is_idempotent(live_user, account, limit_entries, clock):
    account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user).open_position(position=limit_position(live_user, clock))
    account.set_price(SYMBOL, "99.5")
    clock.advance(TIMEOUT + 1)
    executor(live_user).limit_entry_settle(position=position)
    exchange_before, orders_before = exchange_state(account), orders_state(position)
    start = len(account.calls)

    executor(live_user).limit_entry_settle(position=position)
    settle_limit_entry.run(position.pk)
    reconcile_user(user=live_user, executor=executor(live_user))

    assert exchange_state(account) == exchange_before and orders_state(position) == orders_before
    assert calls_since(account, start, "create_order", "cancel_order") == []
    assert position.fills.count() == 1


@pytest.mark.parametrize("closer", ["manual", "take_profits"])
def test_closing_a_position_cancels_the_rest_of_its_resting_limit_entry(
    live_user, account, limit_entries, clock, closer
):
    account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user).open_position(position=limit_position(live_user, clock))
    account.set_price(SYMBOL, "99.5")
    clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
    position = executor(live_user).limit_entry_settle(position=position)
    assert position.quantity == Decimal("0.6")

    if closer == "manual":
        position = executor(live_user).close_position(position=position, reason=Position.CloseReason.MANUAL)
    else:
        account.set_price(SYMBOL, "104")  # both take-profits fire, the position is flat
        reconcile_user(user=live_user, executor=executor(live_user))
    position.refresh_from_db()

    assert position.status == Position.Status.CLOSED
    assert position.orders.get(leg=Order.Leg.ENTRY).state == Order.State.CANCELLED
    assert not [o for o in account.orders.values() if o.result.status == "open"]
    account.set_price(SYMBOL, "99.5")  # back at the limit: nothing re-opens
    assert not account.position(SYMBOL).quantity
    assert account.balance == Decimal("10000") + position.net_pnl


def test_signal_to_a_resting_limit_entry_then_protected(fake_exchange, limit_entries, clock, monkeypatch):
    """Through the ``signal.created`` consumer: the stored entry is sent as a limit at the signal's price."""
    from trading.executors import live as live_module

    monkeypatch.setattr(live_module.time, "sleep", lambda _seconds: None)  # the executor's brief fill polls
    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
    UserPreferences.objects.filter(user=user).update(paper_mode=False, leverage=5)
    ExchangeCredentialFactory(
        user=user, exchange="okx", secrets=ApiSecrets(api_key=API_KEY, secret=API_SECRET, passphrase=PASSPHRASE)
    )
    exchange = fake_account(fake_account_name(user_id=user.pk))
    exchange.set_price(SYMBOL, "100")
    signal = SignalFactory(symbol=SymbolFactory(symbol=SYMBOL, base="BTC"), entry=Decimal("99.5"), stop=Decimal("98"))
    assert tasks.execute_signal.run(signal.pk)["opened"] == 1
    position = Position.objects.get(user=user, signal=signal)
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert position.status == Position.Status.PENDING and (entry.type, entry.price) == (Order.Type.LIMIT, LIMIT)

    exchange.set_price(SYMBOL, "99.5")
    clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
    assert settle_limit_entry.run(position.pk) == Position.Status.OPEN
    assert open_stops(exchange) == [(Decimal("98"), Position.objects.get(pk=position.pk).quantity)]


def test_market_entry_stays_the_default(live_user, account, settings, clock, scheduled):
    settings.LIVE_ENTRY_ORDER_TYPE = "market"  # the declared default (config/settings.py, .env.example)
    position = limit_position(live_user, clock)
    clock.advance(TIMEOUT + 1)  # no window for a market entry

    position = executor(live_user, scheduled).open_position(position=position)

    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert (entry.type, entry.price, entry.state) == (Order.Type.MARKET, None, Order.State.FILLED)
    assert [o.type for o in account.orders_with_client_id(entry.client_order_id)] == ["market"]
    assert position.status == Position.Status.OPEN and position.entry_price == Decimal("100")
    assert open_stops(account) == [(Decimal("98"), Decimal("1.5"))] and scheduled == []


def test_the_check_is_scheduled_on_the_trade_queue(settings, monkeypatch):
    from trading.executors.live import limit_entry_settle_schedule

    sent = []
    monkeypatch.setattr(settle_limit_entry, "apply_async", lambda **kwargs: sent.append(kwargs))
    settings.CELERY_TASK_ALWAYS_EAGER = False
    limit_entry_settle_schedule(7, 12.5)  # the executor's default: the scheduler trading.tasks_live registered
    assert sent == [{"args": [7], "queue": "trade", "countdown": 13.5}]
    settings.CELERY_TASK_ALWAYS_EAGER = True  # eager: would run now, before the deadline; reconcile settles instead
    limit_entry_settle_schedule(7, 12.5)
    assert len(sent) == 1


def test_a_fill_just_after_reconcile_read_the_positions_is_not_taken_for_a_close(
    live_user, account, limit_entries, clock, monkeypatch
):
    from testsupport.exchanges.fake import FakeExchangeClient

    position = executor(live_user).open_position(position=limit_position(live_user, clock))
    read_positions = FakeExchangeClient.fetch_positions

    async def fill_right_after(self, symbols=None):
        held = await read_positions(self, symbols)
        self.account.set_price(SYMBOL, "99.5")  # the limit fills between the two reads of this pass
        return held

    monkeypatch.setattr(FakeExchangeClient, "fetch_positions", fill_right_after)
    reconcile_user(user=live_user, executor=executor(live_user))

    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("1.5")
    assert open_stops(account) == [(Decimal("98"), Decimal("1.5"))]


def test_a_resized_stop_whose_send_failed_is_placed_by_reconcile_before_the_old_goes(
    live_user, account, limit_entries, clock
):
    from exchanges.errors import RetryableExchangeError

    account.partial_fill_ratio = Decimal("0.4")
    position = executor(live_user).open_position(position=limit_position(live_user, clock))
    account.set_price(SYMBOL, "99.5")
    clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
    position = executor(live_user).limit_entry_settle(position=position)
    account.set_price(SYMBOL, "99.5")  # the rest fills: 1.5 held, the stop covers 0.6
    account.inject("create_order", "timeout", "timeout", "timeout", "timeout")
    with pytest.raises(RetryableExchangeError):
        executor(live_user).limit_entry_settle(position=position)
    assert open_stops(account) == [(Decimal("98"), Decimal("0.6"))]  # the old stop stays until a new one stands

    reconcile_user(user=live_user, executor=executor(live_user))

    assert open_stops(account) == [(Decimal("98"), Decimal("1.5"))]
    assert open_take_profits(account) == [(Decimal("102"), Decimal("0.75")), (Decimal("104"), Decimal("0.75"))]
    assert position.orders.get(state=Order.State.OPEN, leg=Order.Leg.STOP_LOSS).client_order_id.endswith("Lsl2")


def test_reconcile_fails_a_limit_entry_chosen_but_never_sent_once_its_window_passed(
    live_user, account, limit_entries, clock, notices
):
    position = limit_position(live_user, clock)
    # the worker died right after storing the entry as a limit order, before sending it (and the task was lost)
    Order.objects.filter(position=position, leg=Order.Leg.ENTRY).update(type=Order.Type.LIMIT, price=LIMIT)
    reconcile_user(user=live_user, executor=executor(live_user))
    assert Position.objects.get(pk=position.pk).status == Position.Status.PENDING  # within its window: left alone
    clock.advance(TIMEOUT)

    report = reconcile_user(user=live_user, executor=executor(live_user))

    position.refresh_from_db()
    assert position.status == Position.Status.FAILED and any("never sent" in r for r in report.repairs)
    assert calls_since(account, 0, "create_order") == []
    assert len(notices) == 1 and "could not be placed" in notices[0]["text"]


def test_limit_entry_over_http_on_the_fake_bitunix_server(settings, limit_entries, clock, notices):
    """The real Bitunix adapter (signed HTTP): limit entry with a price, a partial fill protected, more fills re-size
    the TP/SL orders (new stop first), the remainder cancelled at the deadline."""
    from exchanges import bitunix as bitunix_module
    from testsupport.exchanges.bitunix_fake import BitunixFakeServer

    bitunix_module._PAIRS_CACHE.clear()
    with BitunixFakeServer(api_key=API_KEY, secret=API_SECRET) as server:
        server.account.set_price(SYMBOL, "100")
        settings.LIVE_EXCHANGE_CLIENT = "real"
        settings.BITUNIX_BASE_URL = server.url
        user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
        ExchangeCredentialFactory(user=user, exchange="bitunix", secrets=ApiSecrets(api_key=API_KEY, secret=API_SECRET))
        exchange = server.account
        exchange.partial_fill_ratio = Decimal("0.4")
        position = executor(user).open_position(position=limit_position(user, clock, exchange="bitunix"))
        [sent] = exchange.orders_with_client_id(position.orders.get(leg=Order.Leg.ENTRY).client_order_id)
        assert (sent.type, sent.price, sent.status) == ("limit", LIMIT, "open")

        exchange.set_price(SYMBOL, "99.5")  # 0.6 fills
        clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
        executor(user).limit_entry_settle(position=position)
        assert open_stops(exchange) == [(Decimal("98"), Decimal("0.6"))]

        exchange.partial_fill_ratio = Decimal("0.4")
        exchange.set_price(SYMBOL, "99.5")  # 0.6 more
        clock.advance(LIMIT_ENTRY_CHECK_SECONDS)
        executor(user).limit_entry_settle(position=position)
        assert open_stops(exchange) == [(Decimal("98"), Decimal("1.2"))]
        assert open_take_profits(exchange) == [(Decimal("102"), Decimal("0.6")), (Decimal("104"), Decimal("0.6"))]

        clock.advance(TIMEOUT)
        position = executor(user).limit_entry_settle(position=position)
        assert sent.client_order_id and exchange.orders_with_client_id(sent.client_order_id)[0].status == "canceled"
        assert (
            position.status == Position.Status.OPEN
            and position.quantity == Decimal("1.2") == exchange.positions[SYMBOL].quantity
        )
        assert notices == []
    bitunix_module._PAIRS_CACHE.clear()


def test_the_notice_shows_a_round_price_plainly(live_user, account, limit_entries, clock, notices):
    account.set_price(SYMBOL, "101")
    position = executor(live_user).open_position(position=limit_position(live_user, clock, entry="100"))
    clock.advance(TIMEOUT)
    settle_limit_entry.run(position.pk)
    assert len(notices) == 1 and "BTC/USDT:USDT at 100 was not filled" in notices[0]["text"]
