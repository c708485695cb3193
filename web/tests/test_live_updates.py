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
        authed = WebsocketCommunicator(
            application, "/ws/live/", headers=[(b"origin", b"http://testserver"), (b"cookie", cookie)]
        )
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
        assert health["events_waiting"] == 0
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


# ---- banned users and foreign origins ---------------------------------------------------------------------------


def test_a_banned_users_socket_is_refused():
    from web.live_updates import CLOSE_BANNED

    user, telegram_user = web_user("mallory")
    telegram_user.is_banned = True
    telegram_user.save(update_fields=["is_banned"])

    async def scenario():
        _communicator, connected, code = await connect(user)
        assert not connected and code == CLOSE_BANNED

    async_to_sync(scenario)()


def test_a_ban_closes_the_users_open_sockets_and_only_theirs():
    from accounts.services import telegram_user_ban_set
    from web.live_updates import CLOSE_BANNED

    mallory, mallory_tg = web_user("mallory")
    alice, _ = web_user("alice")

    async def scenario():
        first, connected, _ = await connect(mallory)
        second, connected_too, _ = await connect(mallory)
        bystander, alice_connected, _ = await connect(alice)
        assert connected and connected_too and alice_connected
        for communicator in (first, second, bystander):
            assert (await communicator.receive_json_from())["type"] == "hello"
        # the bot's /ban (and the control panel) → user.banned → web.live_updates.sockets_close_banned
        await sync_to_async(telegram_user_ban_set)(telegram_id=mallory_tg.telegram_id, banned=True)
        for communicator in (first, second):
            closed = await communicator.receive_output(timeout=5)
            assert closed == {"type": "websocket.close", "code": CLOSE_BANNED}
        assert await bystander.receive_nothing(timeout=0.2)
        await bystander.send_json_to({"type": "ping"})
        assert (await bystander.receive_json_from())["type"] == "pong"
        await bystander.disconnect()

    async_to_sync(scenario)()


def test_the_admin_ban_action_announces_the_ban(staff_client, monkeypatch):
    from django.urls import reverse

    import accounts.services

    published = []
    monkeypatch.setattr(accounts.services, "publish", lambda event, **payload: published.append((event, payload)))
    _, target = web_user("mallory")
    response = staff_client.post(
        reverse("admin:accounts_telegramuser_changelist"),
        {"action": "ban_users", "_selected_action": [target.pk], "confirm": "yes", "post": "yes"},
    )
    assert response.status_code in (200, 302)
    target.refresh_from_db()
    assert target.is_banned
    assert published == [("user.banned", {"user_id": target.pk})]


def _handshake(settings, origin: str | None, host: str | None = None):
    from config.asgi import application

    headers = [(b"origin", origin.encode())] if origin else []
    if host:
        headers.append((b"host", host.encode()))

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(scenario)()


def test_a_foreign_origin_is_refused_even_with_allowed_hosts_star(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.CSRF_TRUSTED_ORIGINS, settings.WEB_ALLOWED_ORIGINS, settings.WEB_BASE_URL = [], [], ""
    # refused before authentication (the handshake is denied: HTTP 403), not closed by the consumer with 4401
    for origin in ("https://evil.example", None, "null"):
        connected, code = _handshake(settings, origin, host="signals.example.com")
        assert not connected and code != CLOSE_UNAUTHENTICATED, origin
    # the same origin as the request gets through to the consumer (anonymous here: 4401)
    assert _handshake(settings, "https://signals.example.com", host="signals.example.com") == (
        False,
        CLOSE_UNAUTHENTICATED,
    )


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("https://app.example.com", "api.internal:8000", True),  # WEB_ALLOWED_ORIGINS
        ("https://beta.trusted.example", "api.internal:8000", True),  # CSRF_TRUSTED_ORIGINS wildcard
        ("https://signals.example.com", "api.internal:8000", True),  # WEB_BASE_URL
        ("http://app.example.com", "api.internal:8000", False),  # scheme differs
        ("https://app.example.com.evil.example", "api.internal:8000", False),
        ("https://evil.example", "evil.example", True),  # same origin as the request, and ALLOWED_HOSTS is *
        ("https://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://127.0.0.1:8001", "127.0.0.1:8000", False),
        ("https://evil.example", None, False),
        ("javascript:alert(1)", "api.internal:8000", False),
    ],
)
def test_origin_rules(settings, origin, host, allowed):
    from config.security import origin_allowed

    settings.ALLOWED_HOSTS = ["*"]
    settings.WEB_ALLOWED_ORIGINS = ["https://app.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.trusted.example"]
    settings.WEB_BASE_URL = "https://signals.example.com/"
    assert origin_allowed(origin, host_header=host) is allowed


def test_with_explicit_allowed_hosts_a_matching_origin_passes_and_a_spoofed_host_does_not(settings):
    from config.security import origin_allowed

    settings.ALLOWED_HOSTS = ["signals.example.com"]
    settings.WEB_ALLOWED_ORIGINS, settings.CSRF_TRUSTED_ORIGINS, settings.WEB_BASE_URL = [], [], ""
    assert origin_allowed("https://signals.example.com", host_header=None)
    assert not origin_allowed("https://evil.example", host_header="evil.example")  # Host not allowed either
