"""The service's shared foundation: settings, database, tables, blob storage, the domain error.

Layering: ``model`` <- ``core`` <- ``jobs`` <- ``backend``, ``worker``. Nothing here imports the API,
the worker or the UI, so the API and the worker can share it without importing each other.
"""
