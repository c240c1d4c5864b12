"""Pydantic request/response models, one module per resource (XBase / XCreate / XUpdate / XPublic)."""
