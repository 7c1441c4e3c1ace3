"""Answer generation on the `interactive` queue (never behind bulk work)."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

from saas.lib.worker_loop import run_async

# An answer that has not finished after this long is stopped; the hard limit ends the process.
SOFT_TIME_LIMIT_S = 300
TIME_LIMIT_S = 330


@shared_task(soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def answer_generate_task(*, message_id: int, user_id: int | None = None) -> None:
    """Idempotent: a redelivered task (its worker died) finishes the message once."""
    from ai.conversations.generation import answer_generate

    run_async(answer_generate, tenant=connection.tenant, message_id=message_id, user_id=user_id)
