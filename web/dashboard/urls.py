from django.urls import path

from web.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.pnl, name="pnl"),
    path("positions/", views.positions, name="positions"),
    path("signals/", views.signal_history, name="signals"),
    path("settings/", views.preferences, name="settings"),
    path("settings/api-token/", views.api_token_rotate, name="api-token"),
    path("subscribe/", views.subscribe, name="subscribe"),
    path("subscribe/solana/<str:reference>/", views.subscribe_solana, name="subscribe-solana"),
    path("auto-trading/", views.auto_trading_switch, name="auto-trading"),
    path("auto-trading/resume/", views.auto_trading_resume, name="auto-trading-resume"),
    path("login/", views.login_page, name="login"),
    path("login/telegram/", views.telegram_login, name="login-telegram"),
    path("login/link/<str:token>/", views.login_link, name="login-link"),
    path("logout/", views.logout_view, name="logout"),
]
