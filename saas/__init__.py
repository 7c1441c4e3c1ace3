# The Celery app must load with Django so `.delay()` uses the configured broker (not AMQP).
from saas.celery import app as celery_app

__all__ = ["celery_app"]
