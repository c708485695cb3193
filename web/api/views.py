"""REST API: the authenticated user's signals, positions, PnL and preferences; payment webhooks.

Auth: ``Authorization: Token <key>`` (token created on the dashboard's settings page) or the dashboard session.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import UserPreferences, WebhookEvent
from accounts.payment_webhooks import (
    WebhookAuthenticationError,
    WebhookPayloadError,
    authorization_verify,
    helius_signature,
    helius_transactions,
    json_body,
    standard_webhooks_verify,
    whop_event,
)
from accounts.payments import webhook_event_receive
from accounts.services import preferences_update
from analytics.models import UserActivity
from analytics.services import activity_record
from trading.selectors import auto_trading_status_of
from web.api import serializers as s
from web.dashboard import data as dashboard_data

logger = logging.getLogger(__name__)


class HasTelegramAccount(permissions.BasePermission):
    message = "This account is not linked to a Telegram user (or is suspended)."

    def has_permission(self, request, view) -> bool:
        telegram_user = getattr(request.user, "telegram_user", None) if request.user.is_authenticated else None
        return telegram_user is not None and not telegram_user.is_banned


class UserApi(APIView):
    permission_classes = [permissions.IsAuthenticated, HasTelegramAccount]
    activity_name = ""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        request.telegram_user = request.user.telegram_user
        activity_record(user=request.telegram_user, kind=UserActivity.Kind.API, name=self.activity_name)


class SignalListApi(UserApi):
    activity_name = "api:signals"

    @extend_schema(
        parameters=[s.SignalListInput],
        responses={200: s.SignalOutput(many=True)},
        summary="Recent signals with outcomes",
    )
    def get(self, request: Request) -> Response:
        params = s.SignalListInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        signals = dashboard_data.signal_history(
            limit=params.validated_data["limit"], source=params.validated_data.get("source")
        )
        return Response(s.SignalOutput(signals, many=True).data)


class PositionListApi(UserApi):
    activity_name = "api:positions"

    @extend_schema(
        parameters=[s.PositionListInput], responses={200: s.PositionOutput(many=True)}, summary="The user's positions"
    )
    def get(self, request: Request) -> Response:
        params = s.PositionListInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        user, limit = request.telegram_user, params.validated_data["limit"]
        if params.validated_data["status"] == "open":
            positions = dashboard_data.open_positions(user=user)[:limit]
        else:
            positions = dashboard_data.recent_positions(user=user, limit=limit)
        return Response(s.PositionOutput(positions, many=True).data)


def _jsonable(value):
    if isinstance(value, Decimal):  # money and ratios: plain strings at 8 places, never "0E-8"
        return s.money_text(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class PnlApi(UserApi):
    activity_name = "api:pnl"

    @extend_schema(parameters=[s.PnlInput], responses={200: s.PnlOutput}, summary="PnL summary and equity curve")
    def get(self, request: Request) -> Response:
        params = s.PnlInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        period = params.validated_data["period"]
        summary = dashboard_data.pnl_summary_or_none(user=request.telegram_user, period=period)
        curve = dashboard_data.equity_points(user=request.telegram_user)
        body = {
            "period": period,
            "available": summary is not None,
            "summary": {k: _jsonable(v) for k, v in summary.items()} if summary else None,
            "equity_curve": [{"at": at.isoformat(), "equity": equity} for at, equity in curve],
        }
        return Response(s.PnlOutput(body).data)


def _preferences_body(preferences) -> dict:
    preferences.auto_trading_status = auto_trading_status_of(user=preferences.user)
    return s.PreferencesOutput(preferences).data


class PreferencesApi(UserApi):
    activity_name = "api:preferences"

    @extend_schema(responses={200: s.PreferencesOutput}, summary="The user's preferences and auto-trading state")
    def get(self, request: Request) -> Response:
        preferences = UserPreferences.objects.select_related("user").filter(user=request.telegram_user).first()
        return Response(_preferences_body(preferences or preferences_update(user=request.telegram_user, changes={})))

    @extend_schema(
        request=s.PreferencesUpdateInput,
        responses={200: s.PreferencesOutput, 400: s.ErrorOutput},
        summary="Change preferences and switch auto-trading (validated exactly like the bot's settings)",
    )
    def patch(self, request: Request) -> Response:
        changes = s.PreferencesUpdateInput(data=request.data)
        if not changes.is_valid():  # the same error shape as the service's refusals below
            return Response({"detail": changes.errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            preferences = preferences_update(user=request.telegram_user, changes=dict(changes.validated_data))
        except DjangoValidationError as error:
            detail = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
            return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
        return Response(_preferences_body(preferences))


# ---- payment webhooks ---------------------------------------------------------------------------------------------


class WebhookApi(APIView):
    """No session/token auth (the signature is the auth), so no CSRF; answers fast, the work runs in Celery."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    def receive(self, request: Request) -> Response:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        try:
            return self.receive(request)
        except WebhookAuthenticationError as error:
            logger.warning("%s webhook rejected: %s", self.provider, error)
            return Response({"detail": "invalid signature"}, status=status.HTTP_401_UNAUTHORIZED)
        except WebhookPayloadError as error:  # hostile or malformed input: 400, which the provider does not retry
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        except RequestDataTooBig:
            return Response({"detail": "the body is too large"}, status=status.HTTP_400_BAD_REQUEST)
        except DatabaseError:  # the database is down: 503, the provider retries later
            logger.exception("%s webhook could not be stored", self.provider)
            return Response({"detail": "temporarily unavailable"}, status=status.HTTP_503_SERVICE_UNAVAILABLE)


_WEBHOOK_RESPONSES = {
    200: s.WebhookAckOutput,
    400: OpenApiResponse(description="malformed body"),
    401: OpenApiResponse(description="invalid signature / token or stale timestamp"),
}


class WhopWebhookApi(WebhookApi):
    provider = WebhookEvent.Provider.WHOP

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=_WEBHOOK_RESPONSES,
        auth=[],
        summary="Whop (Standard Webhooks)",
        parameters=[
            OpenApiParameter(name, str, OpenApiParameter.HEADER, required=True)
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        ],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def receive(self, request: Request) -> Response:
        body = request.body  # the raw bytes that were signed (read before any parsing)
        event_id = standard_webhooks_verify(secret=settings.WHOP_WEBHOOK_SECRET, headers=request.headers, body=body)
        payload = json_body(body)
        change = whop_event(payload)
        _, created = webhook_event_receive(
            provider=self.provider, event_id=event_id, payload=payload, event_type=change.event_type
        )
        return Response({"status": "accepted" if created else "duplicate"})


class HeliusWebhookApi(WebhookApi):
    provider = WebhookEvent.Provider.HELIUS

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=_WEBHOOK_RESPONSES,
        auth=[],
        summary="Helius (Solana payments)",
        parameters=[OpenApiParameter("Authorization", str, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def receive(self, request: Request) -> Response:
        body = request.body
        authorization_verify(expected=settings.HELIUS_AUTH_TOKEN, received=request.headers.get("Authorization", ""))
        transactions = helius_transactions(json_body(body))
        created = 0
        for transaction in transactions:
            _, is_new = webhook_event_receive(
                provider=self.provider,
                event_id=helius_signature(transaction),
                payload=transaction,
                event_type=str(transaction.get("type", ""))[:64],
            )
            created += is_new
        return Response({"status": "accepted" if created else "duplicate", "events": created})
