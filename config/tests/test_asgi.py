"""config.asgi: HTTP runs the synchronous middleware chain in a bounded thread pool (one hop a request), not a thread
per request; the start-up objects are frozen out of the garbage collector's full passes."""

import asyncio
import gc
import threading

import pytest


async def _get(application, path: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)

    status, body = [], []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await application(scope, receive, send)
    return status[0], b"".join(body)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_share_a_bounded_pool_of_threads(settings):
    from config.asgi import application, django_asgi_app

    seen: set[str] = set()
    chain = django_asgi_app._middleware_chain.func  # the synchronous ``respond`` the pool runs

    def recording(request):
        seen.add(threading.current_thread().name)
        return chain(request)

    django_asgi_app._middleware_chain.func = recording
    try:

        async def burst():
            return await asyncio.gather(*(_get(application, "/healthz") for _ in range(40)))

        answers = asyncio.run(burst())
    finally:
        django_asgi_app._middleware_chain.func = chain
    assert {status for status, _ in answers} == {200} and answers[0][1] == b'{"status": "ok"}'
    assert seen and all(name.startswith("django-http") for name in seen)
    assert len(seen) <= settings.WEB_SYNC_THREADS


def test_websocket_scopes_still_reach_the_live_updates_router():
    from channels.routing import ProtocolTypeRouter

    from config.asgi import application

    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "websocket"}


def test_start_up_objects_are_frozen_out_of_the_garbage_collector():
    import config.asgi  # noqa: F401

    assert gc.get_freeze_count() > 10_000
