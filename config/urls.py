from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from web import health

# The app list stays on the admin's home page; without the sidebar a changelist has the whole width of a 1280 px
# screen next to its filters (web/tests/test_admin_layout_browser.py measures the lists).
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False), name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/control/", include("web.control.urls")),
    path("admin/", admin.site.urls),
    path("dashboard/", include("web.dashboard.urls")),
    path("api/", include("web.api.urls")),
    path("telegram/", include("telegram_bridge.urls")),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
