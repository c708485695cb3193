import pytest
from django.db import IntegrityError, transaction

from signals.models import Signal
from signals.tests.factories import SignalFactory


@pytest.mark.django_db
def test_one_open_signal_per_symbol_side_and_source():
    signal = SignalFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        SignalFactory(symbol=signal.symbol, side="long")
    SignalFactory(symbol=signal.symbol, side="short")
    SignalFactory(symbol=signal.symbol, side="long", source=Signal.Source.NEWS)
    signal.status = Signal.Status.CLOSED
    signal.save()
    SignalFactory(symbol=signal.symbol, side="long")
    assert Signal.objects.filter(symbol=signal.symbol).count() == 4


@pytest.mark.django_db
def test_dedupe_key_makes_a_retried_insert_fail():
    signal = SignalFactory()
    signal.status = Signal.Status.CLOSED
    signal.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        SignalFactory(symbol=signal.symbol, dedupe_key=signal.dedupe_key)
