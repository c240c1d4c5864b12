"""Fine-tune worker: the Celery app (``worker.celery_app``), the ``fine_tune`` task (``worker.tasks``)
and one job from claim to registered version (``worker.finetune``).

It depends on ``model``, ``core`` and ``jobs``, never on the API (``backend``); the API publishes to it
by task name through ``jobs.queue``.
"""
