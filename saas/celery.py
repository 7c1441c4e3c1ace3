"""The Celery app. Tasks run in the schema of the tenant that queued them (tenant-schemas-celery
puts the schema name in the message headers and switches to it before the task runs)."""

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saas.settings")

app = CeleryApp("atrium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
