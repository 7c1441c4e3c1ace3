"""Request context (request id, tenant) carried in a contextvar so every log line can name them."""

from __future__ import annotations

import logging
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
tenant_var: ContextVar[str] = ContextVar("tenant", default="-")


class RequestContextFilter(logging.Filter):
    """Adds `request_id` and `tenant` to every record (also from Celery tasks and consumers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.tenant = tenant_var.get()
        return True
