import pytest
from django.db import IntegrityError, transaction

from trading.models import Order, Position
from trading.tests.factories import OrderFactory, PositionFactory


@pytest.mark.django_db
def test_client_order_id_is_unique():
    order = OrderFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(position=order.position, client_order_id=order.client_order_id)


@pytest.mark.django_db
def test_one_position_per_user_and_signal():
    position = PositionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        PositionFactory(user=position.user, signal=position.signal)
    # positions without a signal (manual, flips) are not constrained
    PositionFactory(user=position.user, signal=None, symbol=position.symbol)
    PositionFactory(user=position.user, signal=None, symbol=position.symbol)
    assert Position.objects.filter(user=position.user).count() == 3


def test_order_state_machine():
    order = Order(client_order_id="x", state=Order.State.NEW)
    order.transition(Order.State.SUBMITTED)
    order.transition(Order.State.PARTIALLY_FILLED)
    order.transition(Order.State.PARTIALLY_FILLED)
    order.transition(Order.State.FILLED)
    assert order.state == Order.State.FILLED
    with pytest.raises(ValueError, match="illegal transition filled -> open"):
        order.transition(Order.State.OPEN)
