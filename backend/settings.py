"""One settings object for the API, the worker and the web UI, read from the environment and ``.env``.

Everything lives under one data directory by default (``./data`` or ``$SASFORMER_HOME``), so the
embedded configuration (SQLite, filesystem broker) needs no server. Variables carry the
``SASFORMER_`` prefix; ``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL`` are also read
unprefixed because that is how hosting platforms and compose files hand them out.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.config import MIT_VARIANTS


def _default_home() -> Path:
    return Path("data")


def _csv(value: object) -> object:
    """``"a,b"`` -> ``["a", "b"]`` so lists can be given as plain comma-separated env values."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Settings(BaseSettings):
    """Configuration of SASFormer Studio (see ``docs/api.md`` for the variables)."""

    model_config = SettingsConfigDict(env_prefix="SASFORMER_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    environment: Literal["development", "test", "production"] = "development"
    home: Path = Field(default_factory=_default_home, validation_alias=AliasChoices("SASFORMER_HOME"))
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SASFORMER_DATABASE_URL"))
    # PostgreSQL only: tables go into this schema (created if missing); lets test runs not collide.
    database_schema: str | None = None
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SASFORMER_REDIS_URL"))
    celery_broker_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CELERY_BROKER_URL", "SASFORMER_BROKER_URL"))
    celery_result_backend: str | None = Field(
        default=None, validation_alias=AliasChoices("CELERY_RESULT_BACKEND", "SASFORMER_RESULT_BACKEND"))

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Bearer tokens; both empty = no authentication (the embedded single-user default).
    admin_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    read_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=50_000_000, ge=64)
    max_thumbnail_side: int = Field(default=1024, ge=16)

    default_variant: str = "b0"
    # A local MiT/SegFormer checkpoint used for new projects when they name none (never downloaded).
    default_pretrained: Path | None = None
    # Directory of checkpoints that ``POST /projects`` may name by file name (never arbitrary paths).
    pretrained_dir: Path | None = None
    device: str | None = None  # None = CUDA when present, else CPU
    predictor_cache_size: int = Field(default=2, ge=1)
    prediction_cache: bool = True
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("admin_tokens", "read_tokens", "cors_origins"):
                if key in data:
                    data[key] = _csv(data[key])
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.default_variant not in MIT_VARIANTS:
            raise ValueError(f"default_variant must be one of {sorted(MIT_VARIANTS)}, got {self.default_variant!r}")
        weak = [t for t in self.admin_tokens + self.read_tokens if len(t) < 16 or t in ("changeme", "secret")]
        if weak and self.environment == "production":
            raise ValueError("auth tokens must be at least 16 characters and not a default value in production")
        if self.environment == "production" and not self.admin_tokens:
            raise ValueError("production needs SASFORMER_ADMIN_TOKENS: an open API is for development only")
        return self

    # ---- derived locations -------------------------------------------------------------------
    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def labels_dir(self) -> Path:
        return self.home / "labels"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL with a driver SQLAlchemy has here (``postgresql://`` -> psycopg 3)."""
        url = self.database_url or f"sqlite:///{(self.home / 'db.sqlite').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url

    @property
    def broker_url(self) -> str:
        """Celery broker: explicit URL, else Redis when ``REDIS_URL`` is set, else the filesystem transport."""
        return self.celery_broker_url or self.redis_url or "filesystem://"

    @property
    def result_backend(self) -> str:
        if self.celery_result_backend:
            return self.celery_result_backend
        if self.redis_url:
            return self.redis_url
        return f"file://{(self.jobs_dir / 'results').resolve()}"

    @property
    def broker_transport_options(self) -> dict[str, str]:
        """Folders of the filesystem transport (unused with Redis)."""
        b = self.broker_dir.resolve()
        return {"data_folder_in": str(b / "out"), "data_folder_out": str(b / "out"),
                "processed_folder": str(b / "processed"), "control_folder": str(b / "control")}

    @property
    def auth_enabled(self) -> bool:
        return bool(self.admin_tokens or self.read_tokens)

    def ensure_dirs(self) -> None:
        for d in (self.home, self.images_dir, self.labels_dir, self.models_dir, self.jobs_dir, self.broker_dir,
                  self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    return Settings()
