from django.urls import include, path


def boom(request):
    raise RuntimeError("kaboom with secret context")


urlpatterns = [path("boom", boom), path("api/boom", boom), path("", include("config.urls"))]
