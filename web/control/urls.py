from django.contrib import admin
from django.urls import path

from web.control import views

app_name = "control"

urlpatterns = [
    path("", admin.site.admin_view(views.dashboard), name="dashboard"),
    path("broadcast/", admin.site.admin_view(views.broadcast), name="broadcast"),
    path("auto-trading/", admin.site.admin_view(views.auto_trading), name="auto-trading"),
    path("snapshot/", admin.site.admin_view(views.snapshot), name="snapshot"),
    path("users/", admin.site.admin_view(views.user_action), name="user-action"),
    path("symbols/", admin.site.admin_view(views.symbol_mute), name="symbol-mute"),
    path("backtests/", admin.site.admin_view(views.backtest_launch), name="backtest-launch"),
    path("backtests/<int:run_id>/", admin.site.admin_view(views.backtest_detail), name="backtest-detail"),
    path("backtests/<int:run_id>/equity.png", admin.site.admin_view(views.backtest_png), name="backtest-png"),
]
