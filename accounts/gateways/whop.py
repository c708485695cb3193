"""The Whop port: create a hosted checkout for a plan, carrying our metadata (the buyer's Telegram id).

``WhopApiClient`` calls Whop's REST API (``POST /api/v1/checkout_configurations`` with ``plan_id``, ``metadata``,
``redirect_url``; the answer carries ``id`` and ``purchase_url``). Whop copies the metadata onto the membership,
so the webhooks of the purchase name the buyer. ``testsupport.whop_api.WhopFakeServer`` answers the same endpoint
locally for tests and the demo (``WHOP_API_BASE=http://127.0.0.1:<port>/api/v1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx
from django.conf import settings


class WhopGatewayError(Exception):
    """Whop is unreachable, refused the request or answered something unexpected (the message is for logs)."""


@dataclass(frozen=True)
class WhopCheckout:
    id: str
    purchase_url: str


class WhopGateway(Protocol):
    def checkout_create(self, *, plan_id: str, metadata: dict[str, str], redirect_url: str = "") -> WhopCheckout: ...


class WhopApiClient:
    def __init__(
        self, *, api_key: str, base_url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    def checkout_create(self, *, plan_id: str, metadata: dict[str, str], redirect_url: str = "") -> WhopCheckout:
        if not self.api_key:
            raise WhopGatewayError("WHOP_API_KEY is not configured")
        body: dict = {"plan_id": plan_id, "metadata": metadata}
        if redirect_url:
            body["redirect_url"] = redirect_url
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.post(
                    f"{self.base_url}/checkout_configurations",
                    json=body,
                    headers={"Authorization": f"Bearer {self.api_key}"},
                )
        except httpx.HTTPError as error:
            raise WhopGatewayError(f"Whop is unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise WhopGatewayError(f"Whop answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise WhopGatewayError("Whop answered something that is not JSON") from None
        checkout_id = answer.get("id") if isinstance(answer, dict) else None
        url = answer.get("purchase_url") if isinstance(answer, dict) else None
        if not isinstance(checkout_id, str) or not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise WhopGatewayError("Whop's answer has no checkout id or purchase_url")
        return WhopCheckout(id=checkout_id, purchase_url=url)


def whop_gateway() -> WhopGateway:
    """The configured Whop client (``WHOP_API_KEY``, ``WHOP_API_BASE``)."""
    return WhopApiClient(api_key=settings.WHOP_API_KEY, base_url=settings.WHOP_API_BASE)
