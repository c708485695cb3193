from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from web.api import views

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves Swagger UI's start-up script from ?script instead of inline (Content-Security-Policy)
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("v1/signals/", views.SignalListApi.as_view(), name="signals"),
    path("v1/positions/", views.PositionListApi.as_view(), name="positions"),
    path("v1/pnl/", views.PnlApi.as_view(), name="pnl"),
    path("v1/preferences/", views.PreferencesApi.as_view(), name="preferences"),
    path("webhooks/whop/", views.WhopWebhookApi.as_view(), name="webhook-whop"),
    path("webhooks/helius/", views.HeliusWebhookApi.as_view(), name="webhook-helius"),
]
