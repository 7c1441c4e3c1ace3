"""Request-wide middleware that runs before the tenant is known."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from saas import probes
from saas.logging import request_id_var, tenant_var

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextMiddleware:
    """Gives each request an id (keeps a well-formed incoming X-Request-ID) for logs and replies."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        # Set, not reset afterwards: Django logs the response (e.g. "Not Found") after the
        # middleware chain returns, and that line must still carry the ids. The next request
        # in this context overwrites them.
        request_id_var.set(request_id)
        tenant_var.set("-")
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics on any host, before tenant routing touches the DB:
    load balancers and scrapers call them by IP or internal name."""

    routes: dict[str, Callable[[HttpRequest], HttpResponse]] = {
        "/healthz": probes.healthz,
        "/readyz": probes.readyz,
        "/metrics": probes.metrics,
    }

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.routes.get(request.path.rstrip("/") or "/")
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)
