"""ASGI entry point for daphne: HTTP through Django, websockets through Channels.

Websockets pass the origin check (ALLOWED_HOSTS), then get their tenant from the Host header
and their user from the session cookie; each consumer then requires membership."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saas.settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from ai.routing import websocket_urlpatterns as ai_sockets  # noqa: E402
from retrieval.routing import websocket_urlpatterns as retrieval_sockets  # noqa: E402
from tenants.websocket import TenantWebsocketMiddleware, session_auth_stack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            TenantWebsocketMiddleware(session_auth_stack(URLRouter(retrieval_sockets + ai_sockets)))
        ),
    }
)
