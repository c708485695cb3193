"""WebSocket live updates: auth required, own events only, staff stream, malformed frames."""

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from trading.tests.factories import PositionFactory
from web.live_updates import (
    CLOSE_UNAUTHENTICATED,
    LiveUpdatesConsumer,
    push_admin_health,
    push_position,
    push_signal,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def web_user(name, *, staff=False):
    user = get_user_model().objects.create_user(name, password="a-long-password-1", is_staff=staff)
    telegram_user = TelegramUserFactory(web_user=user)
    return user, telegram_user


async def connect(user):
    communicator = WebsocketCommunicator(LiveUpdatesConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


def test_anonymous_socket_is_closed_with_4401():
    from django.contrib.auth.models import AnonymousUser

    async def scenario():
        _communicator, connected, code = await connect(AnonymousUser())
        assert not connected and code == CLOSE_UNAUTHENTICATED

    async_to_sync(scenario)()


def test_full_asgi_stack_authenticates_with_the_dashboard_session(client):
    from config.asgi import application

    user, _ = web_user("alice")
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario():
        anonymous = WebsocketCommunicator(application, "/ws/live/", headers=[(b"origin", b"http://testserver")])
        connected, code = await anonymous.connect()
        assert not connected and code == CLOSE_UNAUTHENTICATED
        authed = WebsocketCommunicator(application, "/ws/live/", headers=[(b"origin", b"http://testserver"), (b"cookie", cookie)])
        connected, _ = await authed.connect()
        assert connected
        assert (await authed.receive_json_from())["type"] == "hello"
        await authed.disconnect()

    async_to_sync(scenario)()


def test_a_user_receives_only_their_own_position_events():
    alice, alice_tg = web_user("alice")
    bob, _ = web_user("bob")
    position = PositionFactory(user=alice_tg)

    async def scenario():
        a, ok_a, _ = await connect(alice)
        b, ok_b, _ = await connect(bob)
        assert ok_a and ok_b
        await a.receive_json_from()  # hello
        await b.receive_json_from()
        await sync_to_async(push_position)(position.pk)
        event = await a.receive_json_from(timeout=2)
        assert event["type"] == "position" and event["id"] == position.pk and event["status"] == "open"
        assert await b.receive_nothing(timeout=0.3)
        await a.disconnect()
        await b.disconnect()

    async_to_sync(scenario)()


def test_signals_respect_preferences_and_staff_get_the_admin_stream():
    alice, alice_tg = web_user("alice")
    operator, _ = web_user("operator", staff=True)
    signal = SignalFactory(risk_level="high")
    alice_tg.preferences.accepted_risk_levels = ["low"]
    alice_tg.preferences.save()

    async def scenario():
        a, _, _ = await connect(alice)
        s, _, _ = await connect(operator)
        await a.receive_json_from()
        hello = await s.receive_json_from()
        assert "staff" in hello["streams"]
        await sync_to_async(push_signal)(signal.pk)
        assert (await s.receive_json_from(timeout=2))["id"] == signal.pk  # the operator accepts every risk level
        assert await a.receive_nothing(timeout=0.3)  # high risk is not accepted by alice
        await sync_to_async(push_admin_health)()
        health = await s.receive_json_from(timeout=2)
        assert health["type"] == "health" and "errors_today" in health and "queue_lengths" in health
        assert await a.receive_nothing(timeout=0.3)
        await a.disconnect()
        await s.disconnect()

    async_to_sync(scenario)()


def test_malformed_client_frames_get_an_error_and_the_socket_stays_healthy():
    alice, _ = web_user("alice")

    async def scenario():
        a, _, _ = await connect(alice)
        await a.receive_json_from()
        for frame in ("not json", json.dumps([1, 2]), json.dumps({"type": "subscribe"}), "x" * 10_000):
            await a.send_to(text_data=frame)
            assert (await a.receive_json_from(timeout=2))["type"] == "error"
        await a.send_to(bytes_data=b"\x00\x01")
        assert (await a.receive_json_from(timeout=2))["type"] == "error"
        await a.send_json_to({"type": "ping"})
        assert await a.receive_json_from(timeout=2) == {"type": "pong"}
        await a.disconnect()

    async_to_sync(scenario)()
