"""SASFormer Studio's REST service (FastAPI). ``create_app(settings)`` builds it; ``python -m backend`` serves it."""

__version__ = "0.1.0"
