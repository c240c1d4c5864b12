"""``python -m backend``: serve the API with uvicorn on the host/port from settings (127.0.0.1:8000)."""

from __future__ import annotations

import argparse

import uvicorn

from core.settings import Settings


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m backend", description="Run the SASFormer Studio API.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each loads models)")
    args = parser.parse_args(argv)
    settings.ensure_dirs()
    uvicorn.run("backend.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level=settings.log_level.lower(), access_log=False)


if __name__ == "__main__":
    main()
