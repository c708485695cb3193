"""Telegram webhook: verify the secret header in constant time, store the raw update once, answer at once.

The handling runs on the telegram queue (``telegram_update_process``), so the answer does not wait for a dozen
queries and Telegram never re-delivers because a handler was slow; a stored update is never lost (see
``telegram_bridge.inbox.update_receive``).
"""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from telegram_bridge.inbox import update_receive

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 — a header name


def webhook_secret_valid(received: str) -> bool:
    expected = settings.TELEGRAM_WEBHOOK_SECRET
    return bool(expected) and secrets.compare_digest(received.encode(), expected.encode())


@csrf_exempt
@require_POST
def telegram_webhook(request: HttpRequest) -> HttpResponse:
    # Refused before the body is parsed or the database is touched.
    if not webhook_secret_valid(request.headers.get(SECRET_HEADER, "")):
        return JsonResponse({"ok": False, "error": "unauthorized"}, status=401)
    try:
        update = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return JsonResponse({"ok": False, "error": "invalid JSON"}, status=400)
    update_receive(update=update)  # stored (or a re-delivery): 200 either way, so Telegram stops re-sending
    return JsonResponse({"ok": True})
