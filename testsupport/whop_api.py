"""A local stand-in for Whop (HTTP on 127.0.0.1) for tests and the demo, and Whop's webhook deliveries.

The server answers ``POST /api/v1/checkout_configurations`` as Whop's REST API documents it (Bearer API key; body
``plan_id``, ``metadata``, ``redirect_url``; answer ``id`` = ``ch_…``, ``plan``, ``metadata``, ``purchase_url``), so
the real ``accounts.gateways.whop.WhopApiClient`` runs against it over HTTP. ``checkout_complete`` plays the buyer
paying: it returns the webhook payloads Whop then sends (API v1 shapes of the Whop documentation:
``membership.went_valid`` with the membership — ``renewal_period_end``, ``plan: {"id"}``, the checkout's
``metadata`` — and ``payment.succeeded`` with the payment — ``membership: {"id"}``, ``total``, ``currency``,
``paid_at``). ``delivery`` signs a payload as Standard Webhooks prescribes; pass ``sign`` to use another signer
(the tests sign with the ``standardwebhooks`` reference library).

Usage::

    with WhopFakeServer(api_key="k", plans={"plan_pro": 30}) as whop:
        settings.WHOP_API_BASE, settings.WHOP_API_KEY = whop.api_base, "k"
        url = whop_checkout_create(user=user, plan=plan)
        payloads = whop.checkout_complete(whop.checkout_id_of(url))
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from accounts.payment_webhooks import standard_webhooks_sign

COMPANY_ID = "biz_PerpsSignals01"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _envelope(event_type: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "api_version": "v1",
        "timestamp": _iso(at),
        "type": event_type,
        "data": data,
        "company_id": COMPANY_ID,
    }


def membership_payload(
    *,
    event_type: str = "membership.went_valid",
    membership_id: str,
    plan_id: str,
    metadata: dict[str, Any] | None = None,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    status: str = "active",
    at: datetime | None = None,
) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    period_start = period_start or at
    data = {
        "id": membership_id,
        "status": status,
        "created_at": _iso(period_start),
        "joined_at": _iso(period_start),
        "updated_at": _iso(at),
        "manage_url": f"https://whop.com/billing/manage/{membership_id}",
        "member": {"id": "mber_" + membership_id[4:]},
        "user": {"id": "user_" + membership_id[4:], "username": "buyer", "name": "Buyer", "email": "buyer@example.com"},
        "renewal_period_start": _iso(period_start),
        "renewal_period_end": _iso(period_end) if period_end else None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "currency": "usd",
        "company": {"id": COMPANY_ID, "title": "Perps Signals"},
        "plan": {"id": plan_id},
        "product": {"id": "prod_PerpsSignals", "title": "Perps Signals"},
        "promo_code": None,
        "license_key": None,
        "metadata": metadata or {},
        "payment_collection_paused": False,
    }
    return _envelope(event_type, data, at)


def payment_payload(
    *,
    payment_id: str,
    membership_id: str,
    plan_id: str,
    total: float | str,
    paid_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    event_type: str = "payment.succeeded",
) -> dict[str, Any]:
    paid_at = paid_at or datetime.now(UTC)
    data = {
        "id": payment_id,
        "status": "paid",
        "substatus": "succeeded",
        "refundable": True,
        "retryable": False,
        "voidable": False,
        "created_at": _iso(paid_at),
        "paid_at": _iso(paid_at),
        "refunded_at": None,
        "plan": {"id": plan_id},
        "product": {"id": "prod_PerpsSignals", "title": "Perps Signals"},
        "user": {"id": "user_" + membership_id[4:], "name": "Buyer", "username": "buyer"},
        "membership": {"id": membership_id, "status": "active"},
        "currency": "usd",
        "total": total,
        "subtotal": total,
        "usd_total": total,
        "billing_reason": "subscription_create",
        "metadata": metadata or {},
    }
    return _envelope(event_type, data, paid_at)


def refund_payload(
    *, payment_id: str, membership_id: str, amount: float | str, at: datetime | None = None
) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    data = {
        "id": f"rf_{uuid.uuid4().hex[:15]}",
        "amount": amount,
        "currency": "usd",
        "status": "succeeded",
        "created_at": _iso(at),
        "provider": "stripe",
        "payment": {
            "id": payment_id,
            "total": amount,
            "currency": "usd",
            "paid_at": _iso(at),
            "membership": {"id": membership_id, "status": "canceled"},
        },
    }
    return _envelope("refund.created", data, at)


Signer = Callable[[str, int, bytes], str]  # (msg_id, unix timestamp, body) -> "v1,<base64>"


def delivery(
    payload: dict[str, Any],
    *,
    secret: str,
    msg_id: str | None = None,
    timestamp: int | None = None,
    sign: Signer | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and the Standard Webhooks headers Whop sends for ``payload`` (the same ``msg_id`` on a retry)."""
    body = json.dumps(payload).encode()
    msg_id = msg_id or payload.get("id") or f"msg_{uuid.uuid4().hex[:24]}"
    timestamp = int(datetime.now(UTC).timestamp()) if timestamp is None else timestamp
    signature = (
        sign(msg_id, timestamp, body)
        if sign
        else standard_webhooks_sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
    )
    return body, {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


class WhopFakeServer:
    """Whop's checkout endpoint on 127.0.0.1, remembering every checkout it created."""

    def __init__(
        self,
        *,
        api_key: str = "whop-test-key",
        plans: dict[str, int] | None = None,
        prices: dict[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.plans = dict(plans or {"plan_pro": 30})  # Whop plan id -> billing period in days
        self.prices = dict(prices or {})  # Whop plan id -> price text (default "29.00")
        self.checkouts: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v1"

    def start(self) -> WhopFakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer = server._handle(self.path, dict(self.headers), raw)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="whop-fake").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WhopFakeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": raw})
        if urlsplit(path).path.rstrip("/") != "/api/v1/checkout_configurations":
            return 404, {"error": {"type": "not_found", "message": "Not found"}}
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "unauthorized", "message": "The API key is invalid"}}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"error": {"type": "invalid_request", "message": "Invalid JSON"}}
        plan_id = body.get("plan_id")
        if plan_id not in self.plans:
            return 404, {"error": {"type": "not_found", "message": f"Plan {plan_id} not found"}}
        metadata = body.get("metadata") or {}
        with self._lock:
            checkout_id = f"ch_{next(self._ids):015d}"
            checkout = {
                "id": checkout_id,
                "company_id": COMPANY_ID,
                "mode": "payment",
                "currency": "usd",
                "plan": {
                    "id": plan_id,
                    "visibility": "visible",
                    "plan_type": "renewal",
                    "release_method": "buy_now",
                    "currency": "usd",
                    "billing_period": self.plans[plan_id],
                },
                "affiliate_code": None,
                "metadata": metadata,
                "redirect_url": body.get("redirect_url"),
                "purchase_url": f"{self.url}/checkout/{plan_id}?session={checkout_id}",
            }
            self.checkouts[checkout_id] = checkout
        return 200, checkout

    @staticmethod
    def checkout_id_of(purchase_url: str) -> str:
        return parse_qs(urlsplit(purchase_url).query)["session"][0]

    def checkout_complete(self, checkout_id: str, *, at: datetime | None = None) -> list[dict[str, Any]]:
        """The buyer pays: the payloads Whop sends (membership.went_valid, then payment.succeeded)."""
        checkout = self.checkouts[checkout_id]
        at = at or datetime.now(UTC)
        plan_id = checkout["plan"]["id"]
        membership_id = f"mem_{checkout_id[3:]}"
        period_end = at + timedelta(days=self.plans[plan_id])
        return [
            membership_payload(
                membership_id=membership_id,
                plan_id=plan_id,
                metadata=checkout["metadata"],
                period_start=at,
                period_end=period_end,
                at=at,
            ),
            payment_payload(
                payment_id=f"pay_{checkout_id[3:]}",
                membership_id=membership_id,
                plan_id=plan_id,
                total=float(self.prices.get(plan_id, "29.00")),
                paid_at=at,
            ),
        ]
