import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.orders import client_order_id

legs = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
ids = st.integers(min_value=0, max_value=9_999_999_999)


@given(signal_id=ids, user_id=ids, leg=legs)
def test_client_order_id_is_short_alphanumeric_and_deterministic(signal_id, user_id, leg):
    value = client_order_id(signal_id=signal_id, user_id=user_id, leg=leg)
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", value)
    assert value == client_order_id(signal_id=signal_id, user_id=user_id, leg=leg)


@given(a=st.tuples(ids, ids, legs), b=st.tuples(ids, ids, legs))
def test_client_order_id_is_injective(a, b):
    ida = client_order_id(signal_id=a[0], user_id=a[1], leg=a[2])
    idb = client_order_id(signal_id=b[0], user_id=b[1], leg=b[2])
    assert (ida == idb) == (a == b)


@pytest.mark.parametrize("leg", ["", "Entry", "e-1", "toolonglg"])
def test_client_order_id_rejects_bad_legs(leg):
    with pytest.raises(ValueError):
        client_order_id(signal_id=1, user_id=2, leg=leg)


def test_executor_for_rejects_unknown_mode():
    from trading.executors.factory import executor_for

    with pytest.raises(ValueError):
        executor_for(user=None, mode="demo")
