"""/api/docs/ works offline: Swagger UI's script, stylesheet and favicon come from drf-spectacular-sidecar's static
files (SPECTACULAR_SETTINGS ... = "SIDECAR"), not from a CDN."""

import re

from django.contrib.staticfiles import finders
from django.urls import reverse

ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def test_docs_page_references_only_local_static_files(client, settings):
    response = client.get(reverse("api:docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assets = ASSET.findall(html)
    assert len(assets) >= 3  # the bundle, the standalone preset, the stylesheet (and the favicon)
    static_prefix = "/" + settings.STATIC_URL.lstrip("/")
    start_script = reverse("api:docs") + "?script="  # Swagger UI's start-up script, served by the view (no inline JS)
    assert start_script in assets and "<script>" not in html
    script = client.get(start_script)
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    for url in (url for url in assets if url != start_script):
        assert url.startswith(static_prefix) and not url.startswith("//"), url
        # …and each one is a file the static files finders serve (collectstatic copies it), i.e. no network needed.
        assert finders.find(url.removeprefix(static_prefix)) is not None, url
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets)
    assert any(url.endswith(".css") for url in assets)
    assert "cdn." not in html.lower() and "unpkg" not in html.lower() and "jsdelivr" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']https?:""", html)
