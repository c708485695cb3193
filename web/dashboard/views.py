"""Views of the users' web dashboard. Thin: reads through selectors, writes through services."""

from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.authtoken.models import Token

from accounts.login_links import TelegramLoginError, login_token_consume, telegram_login_verify, web_user_for
from accounts.login_throttle import LINK, failure_record, lockout_message, lockout_remaining
from accounts.models import Payment, PnlPeriod, UserPreferences
from accounts.services import AUTO_TRADING, preferences_check, preferences_update, telegram_user_register
from accounts.solana_pay import amount_text, qr_svg_data_uri
from accounts.subscriptions import (
    CheckoutError,
    plan_features_text,
    plan_for_sale,
    plan_prices_text,
    plans_for_sale,
    solana_payment_request_create,
    solana_payment_url,
    subscription_current,
    whop_checkout_create,
)
from analytics.models import UserActivity
from analytics.services import activity_record
from trading.selectors import auto_trading_status_of
from trading.services import user_auto_trading_resume
from web.dashboard import data as dashboard_data
from web.dashboard.forms import PreferencesForm

logger = logging.getLogger(__name__)


def dashboard_login_required(page: str):
    """Only a logged-in Telegram user (not banned) sees the page; each visit is recorded as activity."""

    def decorator(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            telegram_user = getattr(request.user, "telegram_user", None) if request.user.is_authenticated else None
            if telegram_user is None or telegram_user.is_banned:
                return redirect(f"{reverse('dashboard:login')}?next={request.path}")
            request.telegram_user = telegram_user
            request.live_refresh_ms = settings.LIVE_FALLBACK_REFRESH_SECONDS * 1000
            activity_record(user=telegram_user, kind=UserActivity.Kind.DASHBOARD, name=page)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _safe_next(request: HttpRequest) -> str:
    """The dashboard page a form came from (its ``next`` field), never another site."""
    target = request.POST.get("next") or ""
    return target if target.startswith("/dashboard/") and not target.startswith("//") else reverse("dashboard:pnl")


def _log_in(request: HttpRequest, telegram_user) -> None:
    web_user = web_user_for(telegram_user=telegram_user)
    login(request, web_user, backend="django.contrib.auth.backends.ModelBackend")


def _login_page(request: HttpRequest, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "web/dashboard/login.html",
        {
            "bot_username": settings.TELEGRAM_BOT_USERNAME,
            "auth_url": request.build_absolute_uri(reverse("dashboard:login-telegram")),
        },
        status=status,
    )


@require_GET
def login_page(request: HttpRequest) -> HttpResponse:
    return _login_page(request)


def _throttled(request: HttpRequest) -> HttpResponse | None:
    """429 with the login page when this client made too many failed login attempts (accounts/login_throttle.py)."""
    remaining = lockout_remaining(LINK, request=request)
    if not remaining:
        return None
    messages.error(request, lockout_message(remaining))
    response = _login_page(request, status=429)
    response["Retry-After"] = str(remaining)
    return response


@require_GET
def telegram_login(request: HttpRequest) -> HttpResponse:
    """The Login Widget redirects here with id, first_name, username, photo_url, auth_date and hash."""
    if (throttled := _throttled(request)) is not None:
        return throttled
    try:
        fields = telegram_login_verify(data=request.GET.dict())
        user, _ = telegram_user_register(
            telegram_id=int(fields["id"]), username=fields.get("username", ""), first_name=fields.get("first_name", "")
        )
        if user.is_banned:
            raise TelegramLoginError("This account is suspended.")
        _log_in(request, user)
    except TelegramLoginError as error:
        failure_record(LINK, request=request)
        messages.error(request, str(error))
        return redirect("dashboard:login")
    return redirect("dashboard:pnl")


@require_http_methods(["GET", "POST"])
def login_link(request: HttpRequest, token: str) -> HttpResponse:
    """GET only shows a button (link previews and scanners must not burn the single-use token); POST logs in."""
    if request.method == "GET":
        return render(request, "web/dashboard/login_link.html", {"token": token})
    if (throttled := _throttled(request)) is not None:
        return throttled
    try:
        user = login_token_consume(token=token)
        if user is not None:
            _log_in(request, user)
    except TelegramLoginError:
        user = None
    if user is None:
        failure_record(LINK, request=request)
        messages.error(
            request, "This login link is invalid, used or expired. Ask the bot for a new one with /dashboard."
        )
        return redirect("dashboard:login")
    return redirect("dashboard:pnl")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("dashboard:login")


@require_GET
@dashboard_login_required("pnl")
def pnl(request: HttpRequest) -> HttpResponse:
    user = request.telegram_user
    period = request.GET.get("period") or getattr(getattr(user, "preferences", None), "default_pnl_period", "today")
    if period not in PnlPeriod.values:
        period = PnlPeriod.TODAY
    summary = dashboard_data.pnl_summary_or_none(user=user, period=period)
    curve = dashboard_data.equity_points(user=user)
    return render(
        request,
        "web/dashboard/pnl.html",
        {
            "period": period,
            "periods": [("today", "Today"), ("week", "Week"), ("month", "Month"), ("all", "All time")],
            "summary": summary,
            "chart": dashboard_data.equity_svg(curve),
            "curve_points": len(curve),
            "nav": "pnl",
            **_trading_state(user),
        },
    )


def _trading_state(user) -> dict:
    """The auto-trading card of every dashboard page that shows it: state, why, the one action."""
    preferences = getattr(user, "preferences", None)
    return {
        "auto_trading": auto_trading_status_of(user=user),
        "trading_mode": "paper" if preferences is None or preferences.paper_mode else "live",
    }


@require_GET
@dashboard_login_required("positions")
def positions(request: HttpRequest) -> HttpResponse:
    user = request.telegram_user
    return render(
        request,
        "web/dashboard/positions.html",
        {
            "open_positions": dashboard_data.open_positions(user=user),
            "recent_positions": dashboard_data.recent_positions(user=user),
            "nav": "positions",
        },
    )


@require_GET
@dashboard_login_required("signals")
def signal_history(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "web/dashboard/signals.html",
        {
            "signals": dashboard_data.signal_history(limit=50),
            "nav": "signals",
        },
    )


@require_http_methods(["GET", "POST"])
@dashboard_login_required("settings")
def preferences(request: HttpRequest) -> HttpResponse:
    user = request.telegram_user
    current = UserPreferences.objects.select_related("user").filter(user=user).first() or preferences_update(
        user=user, changes={}
    )
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            try:
                preferences_update(user=user, changes=form.changes())
            except ValidationError as error:
                form.add_service_errors(error)
            else:
                messages.success(request, "Settings saved. The bot uses them from now on.")
                return redirect("dashboard:settings")
        else:  # every wrong setting at once: the service also checks what the form could read (nothing is saved)
            try:
                preferences_check(user=user, changes=form.readable_changes())
            except ValidationError as error:
                form.add_service_errors(error)
    else:
        form = PreferencesForm(initial=PreferencesForm.initial_from(current))
    token = Token.objects.filter(user=request.user).first()
    return render(
        request,
        "web/dashboard/settings.html",
        {
            "form": form,
            "nav": "settings",
            "has_api_token": token is not None,
            "new_api_token": request.session.pop("new_api_token", None),
            **_trading_state(user),
        },
    )


@require_POST
@dashboard_login_required("auto-trading")
def auto_trading_switch(request: HttpRequest) -> HttpResponse:
    """The auto-trading card's Switch on / Switch off button, through preferences_update (which says what is
    missing when it cannot be switched on)."""
    on = request.POST.get("on") == "1"
    try:
        preferences_update(user=request.telegram_user, changes={AUTO_TRADING: on})
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(
            request,
            "Auto-trading is on: new signals open positions for you."
            if on
            else "Auto-trading is off: no new positions open; open ones keep their stops.",
        )
    return redirect(_safe_next(request))


@require_POST
@dashboard_login_required("auto-trading-resume")
def auto_trading_resume(request: HttpRequest) -> HttpResponse:
    """The card's Resume button (a drawdown or daily-loss pause), as the bot's /resume."""
    status = auto_trading_status_of(user=request.telegram_user)
    if status.action == "resume":
        user_auto_trading_resume(user=request.telegram_user)
        messages.success(request, f"Auto-trading resumed (it was paused: {status.reason}).")
    else:
        messages.info(request, "Auto-trading is not paused: there is nothing to resume.")
    return redirect(_safe_next(request))


@require_POST
@dashboard_login_required("api-token")
def api_token_rotate(request: HttpRequest) -> HttpResponse:
    """Create (or replace) the user's REST API token; shown once."""
    Token.objects.filter(user=request.user).delete()
    token = Token.objects.create(user=request.user)
    request.session["new_api_token"] = token.key
    messages.success(request, "A new API token was created. Copy it now: it is shown only once.")
    return redirect("dashboard:settings")


@require_http_methods(["GET", "POST"])
@dashboard_login_required("subscribe")
def subscribe(request: HttpRequest) -> HttpResponse:
    """The plans; POST plan + gateway starts a Whop checkout (redirect) or a Solana Pay request (its page)."""
    user = request.telegram_user
    if request.method == "POST":
        plan = plan_for_sale(code=request.POST.get("plan", "")[:32])
        gateway = request.POST.get("gateway")
        if plan is None or gateway not in ("whop", "solana"):
            messages.error(request, "Choose a plan and a way to pay.")
            return redirect("dashboard:subscribe")
        try:
            if gateway == "whop":
                return redirect(whop_checkout_create(user=user, plan=plan))
            payment = solana_payment_request_create(user=user, plan=plan).payment
        except CheckoutError as error:
            messages.error(request, str(error))
            return redirect("dashboard:subscribe")
        return redirect("dashboard:subscribe-solana", reference=payment.reference)
    plans = [
        {"plan": plan, "prices": plan_prices_text(plan), "features": plan_features_text(plan)}
        for plan in plans_for_sale()
    ]
    return render(
        request,
        "web/dashboard/subscribe.html",
        {
            "plans": plans,
            "current": subscription_current(user=user),
            "nav": "subscribe",
        },
    )


@require_GET
@dashboard_login_required("subscribe")
def subscribe_solana(request: HttpRequest, reference: str) -> HttpResponse:
    """One of the user's Solana Pay requests: the link, its QR code, the amount and until when it can be paid."""
    payment = (
        Payment.objects.select_related("plan")
        .filter(user=request.telegram_user, gateway=Payment.Gateway.SOLANA, reference=reference[:44])
        .first()
    )
    if payment is None:
        raise Http404("No such payment request.")
    url = solana_payment_url(payment)
    return render(
        request,
        "web/dashboard/subscribe_solana.html",
        {
            "payment": payment,
            "url": url,
            "qr": qr_svg_data_uri(url),
            "nav": "subscribe",
            "amount": amount_text(payment.amount_base_units, payment.decimals),
        },
    )
