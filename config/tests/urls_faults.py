"""Test-only routes for the fault tests: a view that holds a database query open long enough to be cut."""

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path


def slow_query(request):
    seconds = min(float(request.GET.get("seconds", "0")), 5.0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s), pg_backend_pid()", [seconds])
        pid = cursor.fetchone()[1]
    return JsonResponse({"ok": True, "pid": pid})


urlpatterns = [path("faults/slow-query", slow_query), path("", include("config.urls"))]
