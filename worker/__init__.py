"""Fine-tune worker: Celery app, the ``fine_tune`` task, and the client functions the API calls.

``worker.client`` (submit/cancel) is light: the API imports it without the training stack.
``worker.tasks`` holds the task; ``worker.finetune`` the job logic (labels -> ``model.train.train``
-> registry); ``worker.holdout`` the held-out split of labelled pixels.
"""
