"""HTTP and WebSocket security wiring: the Content-Security-Policy header and the WebSocket Origin check.

**Content-Security-Policy** (``ContentSecurityPolicyMiddleware``; Django 5.2 has none built in): scripts only from
this site (every page loads its JavaScript from /static/, no inline scripts; the login page also loads Telegram's
Login Widget), no plugins, no framing, forms post only here. Styles allow inline ``<style>`` blocks and attributes
(the dashboard, the Django admin and Swagger UI use them; styles cannot run code). The live-updates socket of the
same host is allowed explicitly (``ws://``/``wss://``) for browsers whose ``'self'`` does not cover WebSockets.
``CONTENT_SECURITY_POLICY`` holds the directives; ``CONTENT_SECURITY_POLICY_REPORT_ONLY`` sends it as report-only.

**WebSocket Origin** (``WebSocketOriginValidator``, config/asgi.py): a browser always sends the page's Origin with a
WebSocket handshake, and the session cookie travels with it, so another site's page could otherwise open a socket as
the logged-in user. Allowed: the origins in ``WEB_ALLOWED_ORIGINS`` and ``CSRF_TRUSTED_ORIGINS`` and the origin of
``WEB_BASE_URL`` (``https://*.example.com`` matches subdomains), a host named in ``ALLOWED_HOSTS`` (not ``*``), or
the same origin as the request (Origin host = Host header). With ``ALLOWED_HOSTS=*`` a foreign Origin is still
refused, unlike Channels' ``AllowedHostsOriginValidator``. No Origin at all is refused too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` in lower case; None when it is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def allowed_origins() -> list[str]:
    configured = [*settings.WEB_ALLOWED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]
    if settings.WEB_BASE_URL:
        configured.append(settings.WEB_BASE_URL)
    return [origin.strip().lower().rstrip("/") for origin in configured if origin.strip()]


def origin_allowed(origin: str, *, host_header: str | None) -> bool:
    """Is a WebSocket handshake with this Origin (and Host header) allowed? See the module docstring."""
    normalised = _origin(origin)
    if normalised is None:
        return False
    scheme, _, netloc = normalised.partition("://")
    for allowed in allowed_origins():
        if allowed == normalised:
            return True
        allowed_scheme, _, allowed_netloc = allowed.partition("://")
        if allowed_netloc.startswith("*.") and allowed_scheme == scheme and netloc.endswith(allowed_netloc[1:]):
            return True
    origin_host, _ = split_domain_port(netloc)
    explicit_hosts = [host for host in settings.ALLOWED_HOSTS if host != "*"]
    if origin_host and validate_host(origin_host, explicit_hosts):
        return True
    if host_header:  # same origin: the page and the socket are on the host the request names
        host, _ = split_domain_port(host_header.lower())
        default_port = {"http": "80", "https": "443"}[scheme]
        request_netloc = host_header.lower().removesuffix(f":{default_port}")
        return bool(host) and validate_host(host, settings.ALLOWED_HOSTS) and request_netloc == netloc
    return False


class WebSocketOriginValidator:
    """ASGI middleware: a WebSocket handshake whose Origin is not allowed is refused (HTTP 403) before any
    application code runs."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1") or None
            if not origin or not origin_allowed(origin, host_header=host):
                denier = WebsocketDenier()
                return await denier(scope, receive, send)
        return await self.application(scope, receive, send)


class ContentSecurityPolicyMiddleware:
    """Adds ``Content-Security-Policy`` (or ``-Report-Only``) to every response that has none yet."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        directives: dict[str, list[str]] = settings.CONTENT_SECURITY_POLICY or {}
        if not directives:
            return response
        header = (
            "Content-Security-Policy-Report-Only"
            if settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
            else "Content-Security-Policy"
        )
        if header in response:
            return response
        policy = {name: list(sources) for name, sources in directives.items()}
        try:
            host = request.get_host()
        except Exception:  # DisallowedHost: the error page still gets the static policy
            host = ""
        if host and "connect-src" in policy:
            policy["connect-src"] += [f"{'wss' if request.is_secure() else 'ws'}://{host}"]
        response[header] = "; ".join(" ".join([name, *sources]).strip() for name, sources in policy.items())
        return response
