"""Celery reliability settings that every task relies on (issue: streams and bulk jobs)."""

from __future__ import annotations

from django.conf import settings

from saas.celery import app

PROJECT = ("ai.", "retrieval.", "tenants.", "saas.", "billing.")


def project_tasks():
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.startswith(PROJECT)}


def test_tasks_are_acknowledged_late_and_redelivered_when_their_worker_dies():
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


def test_every_task_ends_before_the_broker_would_hand_it_to_another_worker():
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    tasks = project_tasks()
    assert {
        "retrieval.tasks.document_ingest_task",
        "ai.conversations.tasks.answers_end_lost_task",
    } <= set(tasks)
    for name, task in tasks.items():
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert hard and soft and soft < hard < visibility, name


def test_work_goes_to_separate_queues_so_bulk_never_delays_interactive_work():
    routes = settings.CELERY_TASK_ROUTES
    assert routes["ai.conversations.tasks.*"]["queue"] == "interactive"
    assert routes["retrieval.tasks.*"]["queue"] == "ingestion"
    assert {q.name for q in settings.CELERY_TASK_QUEUES} == {
        "interactive", "ingestion", "bulk", "billing",
    }  # fmt: skip
