"""ASGI entry point for daphne: HTTP through Django; websockets are added by the chat issue."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saas.settings")

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

application = ProtocolTypeRouter({"http": django_asgi_app})
