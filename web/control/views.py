"""Control-panel views. Every URL is wrapped in ``admin.site.admin_view`` (active staff only). State-changing actions
are POST; destructive ones (broadcast, pausing auto-trading) render a confirmation page first and are written to the
admin log (LogEntry) by their services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.models import TelegramUser
from accounts.subscriptions import CheckoutError
from analytics import selectors, services
from analytics.backtesting import BacktestRequestError
from analytics.models import BacktestRun
from web.control import backtest_report
from web.control.forms import AutoTradingForm, BacktestForm, BroadcastForm, SymbolMuteForm, UserActionForm


def _context(request: HttpRequest, **extra) -> dict:
    return {**admin.site.each_context(request), **extra}


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "web/control/dashboard.html",
        _context(
            request,
            title="Control panel",
            overview=selectors.analytics_overview(),
            health=selectors.system_health(),
            snapshots=selectors.analytics_snapshot_list(limit=7),
            backtests=BacktestRun.objects.order_by("-created_at")[:10],
            broadcast_form=BroadcastForm(),
            backtest_form=BacktestForm(),
            user_action_form=UserActionForm(),
            symbol_mute_form=SymbolMuteForm(),
        ),
    )


def _confirm(request: HttpRequest, *, title: str, question: str, fields: dict, action_url: str) -> HttpResponse:
    return render(
        request,
        "web/control/confirm.html",
        _context(
            request,
            title=title,
            question=question,
            fields=fields,
            action_url=action_url,
        ),
    )


@require_POST
def broadcast(request: HttpRequest) -> HttpResponse:
    form = BroadcastForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The broadcast message is empty or too long.")
        return redirect("control:dashboard")
    text = form.cleaned_data["text"]
    if request.POST.get("confirm") != "yes":
        recipients = TelegramUser.objects.filter(is_active=True, is_banned=False).count()
        return _confirm(
            request,
            title="Confirm broadcast",
            question=f"Send this message to {recipients} active user(s)?",
            fields={"text": text},
            action_url=request.path,
        )
    try:
        broadcast_id = services.broadcast_start(text=text, actor=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("control:dashboard")
    messages.success(request, f"Broadcast {broadcast_id} queued.")
    return redirect("control:dashboard")


@require_POST
def auto_trading(request: HttpRequest) -> HttpResponse:
    form = AutoTradingForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown auto-trading action.")
        return redirect("control:dashboard")
    pause = form.cleaned_data["action"] == "pause"
    if request.POST.get("confirm") != "yes":
        question = (
            "Pause auto-trading for EVERY user? No new positions are opened until you resume."
            if pause
            else "Resume auto-trading for every user who enabled it?"
        )
        return _confirm(
            request,
            title="Confirm auto-trading switch",
            question=question,
            fields={"action": form.cleaned_data["action"], "reason": form.cleaned_data["reason"]},
            action_url=request.path,
        )
    services.auto_trading_global_set(paused=pause, actor=request.user, reason=form.cleaned_data["reason"])
    messages.success(request, "Auto-trading paused globally." if pause else "Auto-trading resumed.")
    return redirect("control:dashboard")


@require_POST
def user_action(request: HttpRequest) -> HttpResponse:
    """Ban, unban or grant/extend a subscription for users by Telegram id: confirmed first, each change logged."""
    form = UserActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"User action refused: {form.errors.as_text()}")
        return redirect("control:dashboard")
    ids, action, days = form.cleaned_data["telegram_ids"], form.cleaned_data["action"], form.cleaned_data["days"] or 30
    users = list(TelegramUser.objects.filter(telegram_id__in=ids).order_by("telegram_id"))
    unknown = sorted(set(ids) - {user.telegram_id for user in users})
    if not users:
        messages.error(request, "No user has these Telegram ids.")
        return redirect("control:dashboard")
    if request.POST.get("confirm") != "yes":
        verb = {"ban": "Ban", "unban": "Unban", "grant": f"Grant or extend {days} day(s) of subscription for"}[action]
        names = ", ".join(str(user) for user in users[:20]) + (" …" if len(users) > 20 else "")
        question = f"{verb} {len(users)} user(s): {names}?" + (f" Unknown ids ignored: {unknown}." if unknown else "")
        return _confirm(
            request,
            title="Confirm user action",
            question=question,
            action_url=request.path,
            fields={"telegram_ids": ",".join(str(i) for i in ids), "action": action, "days": days},
        )
    for user in users:
        if action == "grant":
            try:
                services.subscription_grant(user=user, days=days, actor=request.user)
            except CheckoutError as error:
                messages.error(request, str(error))
                return redirect("control:dashboard")
        else:
            services.operator_user_ban_set(telegram_id=user.telegram_id, banned=action == "ban", actor=request.user)
    messages.success(request, f"{action.title()}: done for {len(users)} user(s).")
    return redirect("control:dashboard")


@require_POST
def symbol_mute(request: HttpRequest) -> HttpResponse:
    form = SymbolMuteForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Symbol action refused: {form.errors.as_text()}")
        return redirect("control:dashboard")
    symbol, mute = form.cleaned_data["symbol"], form.cleaned_data["action"] == "mute"
    if request.POST.get("confirm") != "yes":
        question = (
            f"Mute {symbol} for EVERY user? No new signals on it until you unmute it." if mute else f"Unmute {symbol}?"
        )
        return _confirm(
            request,
            title="Confirm symbol mute",
            question=question,
            action_url=request.path,
            fields={"symbol": symbol, "action": form.cleaned_data["action"]},
        )
    if services.operator_symbol_mute_set(symbol=symbol, muted=mute, actor=request.user) is None:
        messages.error(request, f"Unknown symbol {symbol}.")
    else:
        messages.success(request, f"{symbol} {'muted' if mute else 'unmuted'} globally.")
    return redirect("control:dashboard")


@require_POST
def snapshot(request: HttpRequest) -> HttpResponse:
    day = services.analytics_snapshot_create().day
    messages.success(request, f"Analytics snapshot for {day} saved.")
    return redirect("control:dashboard")


@require_POST
def backtest_launch(request: HttpRequest) -> HttpResponse:
    form = BacktestForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Backtest not started: {form.errors.as_text()}")
        return redirect("control:dashboard")
    try:
        run = services.backtest_run_start(params=form.cleaned_data, created_by=request.user)
    except BacktestRequestError as error:
        messages.error(request, f"Backtest not started: {error}")
        return redirect("control:dashboard")
    services.admin_action_log(actor=request.user, obj=run, message=f"Launched backtest #{run.pk}: {run.params}")
    messages.success(request, f"Backtest #{run.pk} queued.")
    return redirect("control:backtest-detail", run_id=run.pk)


@require_GET
def backtest_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(BacktestRun, pk=run_id)
    metrics = {k: v for k, v in run.metrics.items() if k not in ("per_symbol", "per_month")}
    return render(
        request,
        "web/control/backtest.html",
        _context(
            request,
            title=f"Backtest #{run.pk}",
            run=run,
            params_text=backtest_report.params_text(run.params),
            metric_groups=backtest_report.metric_groups(metrics),
            table_columns=backtest_report.TABLE_COLUMNS,
            per_symbol=backtest_report.table_rows(run.metrics.get("per_symbol", [])),
            per_month=backtest_report.table_rows(run.metrics.get("per_month", [])),
        ),
    )


@require_GET
def backtest_png(request: HttpRequest, run_id: int) -> FileResponse:
    run = get_object_or_404(BacktestRun, pk=run_id)
    if not run.equity_curve:
        raise Http404("This backtest has no equity chart.")
    try:
        handle = run.equity_curve.open("rb")
    except FileNotFoundError:
        raise Http404("The equity chart file is missing.") from None
    return FileResponse(handle, content_type="image/png")
