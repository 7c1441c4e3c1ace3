"""The one place that says which tenant slugs are acceptable and how they map to hosts/schemas."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
RESERVED_SLUGS = frozenset(
    {
        "www", "api", "admin", "administrator", "public", "static", "media", "mail", "email",
        "smtp", "imap", "pop", "ftp", "billing", "app", "apps", "dashboard", "docs", "help",
        "support", "status", "blog", "dev", "test", "staging", "prod", "cdn", "assets", "auth",
        "login", "logout", "signup", "account", "accounts", "settings", "root", "system",
        "template", "tenant", "tenants", "atrium", "demo-template", "localhost", "ws", "wss",
        "metrics", "health", "healthz", "readyz", "webhook", "webhooks", "stripe", "security",
    }
)  # fmt: skip


def slug_validate(slug: str) -> None:
    """Raise ValidationError (with a message a user can act on) for a malformed or reserved slug."""
    if not 3 <= len(slug) <= 40:
        raise ValidationError("Use 3 to 40 characters.", code="length")
    if not SLUG_PATTERN.match(slug):
        raise ValidationError(
            "Use lowercase letters, digits and hyphens; start and end with a letter or digit.",
            code="invalid",
        )
    if "--" in slug:
        raise ValidationError("Hyphens cannot follow each other.", code="invalid")
    if slug in RESERVED_SLUGS:
        raise ValidationError("This address is reserved. Please pick another.", code="reserved")


def schema_name_for(slug: str) -> str:
    # The prefix keeps tenant schemas apart from public, pg_* and the template schema.
    return "t_" + slug.replace("-", "_")


def domain_for(slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


def url_for_host(host: str, path: str = "/") -> str:
    """An absolute URL on `host`, with the configured scheme and port (for links across hosts)."""
    port = settings.SITE_PORT
    default_port = 443 if settings.SITE_SCHEME == "https" else 80
    netloc = host if port in (0, default_port) else f"{host}:{port}"
    return f"{settings.SITE_SCHEME}://{netloc}{path}"
