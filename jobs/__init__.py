"""The fine-tune job domain, shared by the API (which creates and watches jobs) and the worker (which
runs them): the state machine of the ``jobs`` table, the broker client, the held-out split of labelled
pixels, and the reader of a job's inputs.

Layering: ``model`` <- ``core`` <- ``jobs`` <- ``backend``, ``worker``; the API never imports the
worker and the worker never imports the API.
"""
