"""Django admin list actions on symbols and signals: muting globally asks for confirmation first, every action writes
an admin LogEntry per object, resend re-announces ``signal.created``, and only staff can run them."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from signals.models import Signal, Symbol
from signals.tests.factories import SignalFactory, SymbolFactory

pytestmark = pytest.mark.django_db


def act(client, url_name: str, action: str, objects, **extra):
    return client.post(reverse(url_name), {"action": action, "_selected_action": [o.pk for o in objects], **extra})


def object_log(obj) -> list[str]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk), action_flag=CHANGE
        ).values_list("change_message", flat=True)
    )


def test_mute_asks_for_confirmation_then_mutes_and_logs(staff_client):
    doge, pepe = SymbolFactory(symbol="DOGE/USDT:USDT"), SymbolFactory(symbol="PEPE/USDT:USDT")
    page = act(staff_client, "admin:signals_symbol_changelist", "mute_globally", [doge, pepe])
    html = page.content.decode()
    assert page.status_code == 200 and "Mute 2 symbol(s) globally?" in html and "DOGE/USDT:USDT" in html
    assert 'name="action" value="mute_globally"' in html and 'name="confirm" value="yes"' in html
    assert not Symbol.objects.filter(is_muted=True).exists() and not LogEntry.objects.exists()

    response = act(staff_client, "admin:signals_symbol_changelist", "mute_globally", [doge, pepe], confirm="yes")
    assert response.status_code == 302
    assert set(Symbol.objects.filter(is_muted=True)) == {doge, pepe}
    assert object_log(doge) == ["Muted globally (admin action)."] and object_log(pepe) == object_log(doge)

    act(staff_client, "admin:signals_symbol_changelist", "unmute_globally", [doge])
    assert list(Symbol.objects.filter(is_muted=True)) == [pepe]
    assert "Unmuted globally (admin action)." in object_log(doge)


def test_resend_announces_signal_created_again_and_logs(staff_client, monkeypatch):
    announced = []
    monkeypatch.setattr("signals.admin.publish", lambda event, **payload: announced.append((event, payload)))
    first, second = SignalFactory(), SignalFactory()
    response = act(staff_client, "admin:signals_signal_changelist", "resend", [first, second])
    assert response.status_code == 302
    assert sorted(announced, key=lambda e: e[1]["signal_id"]) == [
        ("signal.created", {"signal_id": first.pk}),
        ("signal.created", {"signal_id": second.pk}),
    ]
    assert object_log(first) == ["Resent: signal.created announced again (admin action)."]
    assert object_log(second) == object_log(first)


def test_non_staff_cannot_mute_or_resend(client, django_user_model, monkeypatch):
    announced = []
    monkeypatch.setattr("signals.admin.publish", lambda event, **payload: announced.append(event))
    symbol, signal = SymbolFactory(), SignalFactory()
    client.force_login(django_user_model.objects.create_user("visitor", password="a-long-password-1"))
    muted = act(client, "admin:signals_symbol_changelist", "mute_globally", [symbol], confirm="yes")
    resent = act(client, "admin:signals_signal_changelist", "resend", [signal])
    assert muted.status_code == resent.status_code == 302 and "/admin/login/" in muted["Location"]
    assert not Symbol.objects.get(pk=symbol.pk).is_muted and announced == [] and not LogEntry.objects.exists()
    assert Signal.objects.count() == 1
