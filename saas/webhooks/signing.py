"""Standard Webhooks signing (https://www.standardwebhooks.com), through the reference library
`standardwebhooks`, so receivers verify with any of its implementations (`Webhook.verify`)."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def secret_generate() -> str:
    """A new signing secret, `whsec_<base64 of 32 random bytes>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def body_serialise(payload: dict[str, Any]) -> str:
    """The exact body sent: the same bytes on every attempt (sorted keys, ASCII only)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def signature_headers(
    *, signing_secrets: list[str], event_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The webhook-id, webhook-timestamp and webhook-signature headers: one `v1,<base64 HMAC>`
    per secret, space-separated (a receiver accepts the message if any one verifies)."""
    signed_at = datetime.fromtimestamp(timestamp, tz=UTC)
    signatures = [
        Webhook(secret).sign(msg_id=event_id, timestamp=signed_at, data=body)
        for secret in signing_secrets
    ]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
