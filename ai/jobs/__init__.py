"""Bulk jobs: many prompts submitted at once (POST /api/v1/jobs), worked through in the
background on the Celery `bulk` queue, every model call through ai.gateway.

- services.py: submit (limits, queued on commit), cancel, finalize (+ the signed webhook).
- processing.py: what one task does: claim items one by one, call the gateway, record outcomes.
- batch.py: jobs in batch mode: all items as one provider batch (ai.gateway.batch) at the
  batch price; submit, poll, collect each result once.
- tasks.py: the task, per-tenant slots and its continuation at the back of the queue.
- selectors.py, api.py, views.py: reads, the REST API and the jobs pages."""
