"""ASGI entry point: HTTP to Django, WebSockets (``/ws/live/``) to the live-updates consumer with session auth.

HTTP goes through ``SyncChainASGIHandler``. Every view and middleware of this project is synchronous, and Django's
own ASGI handler costs for it: each async-capable middleware's hooks go through ``sync_to_async`` and the sync-only
ones (WhiteNoise, the request-id middleware) back through ``async_to_sync``, about fifteen thread switches a request,
and every request gets a thread of its own (started and stopped; under load dozens of them contend for the GIL with
the event loop). Here the middleware chain is built as under WSGI and runs in a bounded pool of ``WEB_SYNC_THREADS``
threads per process, one hop a request, with the WSGI request's connection hygiene (``close_old_connections``
before and after). The Celery task modules are imported at start-up rather than by the first webhook, and the
start-up objects are frozen out of the garbage collector's full passes. Measured sequentially over HTTP (uvicorn):
/healthz 6.4 -> 1.5-1.9 ms, a bot-update post 11.6 -> 4.9-5.7 ms; benchmarks/bench_load.py measures the load.
"""

import gc
import os
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with a synchronous middleware chain run in a bounded thread pool (one hop a request)."""

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        chain = self._middleware_chain
        executor = ThreadPoolExecutor(max_workers=settings.WEB_SYNC_THREADS, thread_name_prefix="django-http")

        def respond(request):
            # What request_started/request_finished do for a WSGI request, in the thread that used the connection
            # (Django's ASGI handler sends those signals from another thread).
            close_old_connections()
            try:
                return chain(request)
            finally:
                close_old_connections()

        self._middleware_chain = sync_to_async(respond, thread_sensitive=False, executor=executor)

    async def __call__(self, scope, receive, send):
        # Without Django's per-request ThreadSensitiveContext, which starts (and stops) a thread for every request just
        # to send request_started/request_finished; those few thread-sensitive calls share one thread instead.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


django.setup(set_prefix=False)
django_asgi_app = SyncChainASGIHandler()

# Every app's Celery task modules now, at start-up (the bridge's pull in aiogram, whose models take seconds to build):
# otherwise the first webhook that queues a task imports them under load, holding the import lock while requests
# pile up behind it.
from config.celery import app as celery_app  # noqa: E402

celery_app.loader.import_default_modules()

# Django must be set up before these imports.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from config.security import WebSocketOriginValidator  # noqa: E402
from web.live_updates import LiveUpdatesConsumer  # noqa: E402

websocket_urlpatterns = [path("ws/live/", LiveUpdatesConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # the Origin is checked against the configured hosts even with ALLOWED_HOSTS=* (config/security.py)
        "websocket": WebSocketOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything loaded so far lives as long as the process: keep it out of the garbage collector's full passes, which
# otherwise walk ~340k start-up objects (aiogram, pandas, ccxt) for ~200 ms, stalling every request of the process.
gc.freeze()
