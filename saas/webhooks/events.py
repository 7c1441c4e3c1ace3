"""The event types a webhook endpoint can subscribe to. Code emitting an event names one of these
(`webhook_emit`); an endpoint subscribed to `*` receives them all."""

from __future__ import annotations

ALL_EVENTS = "*"

EVENT_TYPES: dict[str, str] = {
    "ping": "A test event, sent on request (POST /api/v1/webhooks/{id}/test).",
    "document.ready": "A document was indexed and can be searched.",
    "document.failed": "A document could not be indexed.",
    "job.completed": "A bulk job finished.",
    "job.failed": "A bulk job failed.",
}

# What an endpoint's `events` may hold.
SUBSCRIBABLE = [ALL_EVENTS, *EVENT_TYPES]


def subscribed(events: list[str], event_type: str) -> bool:
    return ALL_EVENTS in events or event_type in events
