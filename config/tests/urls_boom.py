from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import include, path


def boom(request):
    raise RuntimeError("kaboom with secret context")


def missing(request):
    raise Http404("no such thing")


def forbidden(request):
    raise PermissionDenied


urlpatterns = [
    path("boom", boom),
    path("missing", missing),
    path("forbidden", forbidden),
    path("api/boom", boom),
    path("", include("config.urls")),
]
